// A small busy Java program for Ember's JFR acceptance test: it spends most of
// its CPU in emberHotLoop, allocates in emberAllocate and contends a lock, so
// a flight recording of it has CPU, allocation and lock events.
//
//   javac -d out EmberBusy.java
//   java -XX:StartFlightRecording=filename=busy.jfr,settings=profile -cp out EmberBusy 4
public final class EmberBusy {
    private static final Object LOCK = new Object();
    private static volatile long sink;

    static long emberHotLoop(long n) {
        long acc = 0;
        for (long i = 0; i < n; i++) {
            acc += (i * 31) ^ (acc >>> 3);
        }
        return acc;
    }

    static void emberAllocate() {
        byte[][] keep = new byte[64][];
        for (int i = 0; i < 64; i++) {
            keep[i] = new byte[16 * 1024];
        }
        sink += keep[63].length;
    }

    public static void main(String[] args) throws Exception {
        long seconds = args.length > 0 ? Long.parseLong(args[0]) : 4;
        long deadline = System.nanoTime() + seconds * 1_000_000_000L;
        Thread contender = new Thread(() -> {
            while (System.nanoTime() < deadline) {
                synchronized (LOCK) {
                    sink += emberHotLoop(200_000);
                }
            }
        });
        contender.setDaemon(true);
        contender.start();
        while (System.nanoTime() < deadline) {
            sink += emberHotLoop(5_000_000);
            emberAllocate();
            synchronized (LOCK) {
                sink += 1;
            }
        }
        System.out.println("done " + sink);
    }
}
