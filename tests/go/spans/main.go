// Two kinds of work, each in its own span (the pprof label span_id that
// otel-profiling-go sets through pprof.Do), and some outside any span,
// profiled for a few seconds into the CPU profile named by the first
// argument. Standard library only.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"time"
)

// The span IDs the test asks for.
const (
	alphaSpan = "00000000000000a1"
	betaSpan  = "00000000000000b2"
)

var sink uint64

//go:noinline
func emberSpanAlpha(until time.Time) {
	x := uint64(1)
	for time.Now().Before(until) {
		for i := 0; i < 100000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	sink += x
}

//go:noinline
func emberSpanBeta(until time.Time) {
	x := uint64(3)
	for time.Now().Before(until) {
		for i := 0; i < 100000; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
	}
	sink += x
}

//go:noinline
func emberNoSpan(until time.Time) {
	x := uint64(5)
	for time.Now().Before(until) {
		for i := 0; i < 100000; i++ {
			x = x*x + 7
		}
	}
	sink += x
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: spans <cpu-profile-path> <seconds>")
		os.Exit(2)
	}
	seconds, err := time.ParseDuration(os.Args[2] + "s")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	f, err := os.Create(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	until := time.Now().Add(seconds)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		pprof.Do(context.Background(), pprof.Labels("span_id", alphaSpan), func(context.Context) {
			emberSpanAlpha(until)
		})
	}()
	go func() {
		defer wg.Done()
		pprof.Do(context.Background(), pprof.Labels("span_id", betaSpan), func(context.Context) {
			emberSpanBeta(until)
		})
	}()
	go func() {
		defer wg.Done()
		emberNoSpan(until)
	}()
	wg.Wait()
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(sink != 0)
}
