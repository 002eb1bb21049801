//! Building blocks of fault-injection tests: a seeded random number
//! generator, so that a failing schedule can be replayed from its seed; a small
//! `tmpfs` of the test's own, so that one process's disk can fill up without
//! touching the machine's; and a filler file that takes its space until freed.
//!
//! Process faults (SIGKILL, SIGSTOP/SIGCONT) are on
//! [`EmberProcess`](crate::EmberProcess); object-store outages are
//! [`PausableProxy`](crate::s3::PausableProxy).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A small seeded pseudo-random generator (SplitMix64): the same seed gives
/// the same numbers on every machine, which a replayable schedule needs, and
/// no crate is needed for it.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// Returns a generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        // The modulo bias is below 2^-40 for the small `n` tests use.
        self.next_u64() % n
    }

    /// Returns a number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "between({lo}, {hi})");
        lo + self.below(hi - lo + 1)
    }

    /// Returns an index into `weights`, each chosen in proportion to its weight.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        assert!(total > 0, "no weight to choose from");
        let mut pick = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                return i;
            }
            pick -= w;
        }
        unreachable!("pick below the total weight")
    }
}

/// A `tmpfs` mounted on a directory of the test's own, unmounted on drop.
///
/// Mounting needs root (or `CAP_SYS_ADMIN`): tests run as root in CI.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
    mounted: bool,
}

impl Tmpfs {
    /// Mounts a `tmpfs` of `size_mib` MiB on `dir` (created if missing).
    pub fn mount(dir: &Path, size_mib: u64) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let target = c_path(dir)?;
        let source = CString::new("tmpfs").expect("no NUL");
        let options = CString::new(format!("size={size_mib}m")).expect("no NUL");
        // SAFETY: every pointer is a valid NUL-terminated string that outlives
        // the call; mount(2) reads them only.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                source.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "mount -t tmpfs -o size={size_mib}m tmpfs {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            mounted: true,
        })
    }

    /// Returns the mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the bytes free on the filesystem.
    pub fn free_bytes(&self) -> u64 {
        let path = c_path(&self.dir).expect("mounted on a valid path");
        // SAFETY: statvfs is plain old data; zeroes are a valid value.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid NUL-terminated string and `stat` a valid
        // out-pointer, both live for the call.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
        assert_eq!(
            rc,
            0,
            "statvfs {}: {}",
            self.dir.display(),
            std::io::Error::last_os_error()
        );
        stat.f_bavail * stat.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let Ok(target) = c_path(&self.dir) else {
            return;
        };
        // Detached: a process that still has files open there (an ingester
        // killed a moment ago) does not keep the mount alive for the next test.
        // SAFETY: `target` is a valid NUL-terminated string for the call.
        let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            eprintln!(
                "unmounting the tmpfs on {} failed: {}",
                self.dir.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} holds a NUL byte", path.display()))
}

/// A file that takes every free byte of its filesystem, until
/// [`free`](Self::free)d or dropped.
#[derive(Debug)]
pub struct DiskFiller {
    path: PathBuf,
    bytes: u64,
}

impl DiskFiller {
    /// Writes `path` until the filesystem answers `ENOSPC` (in chunks down to
    /// one page, so that not even a small write fits afterwards); fails on any
    /// other error, or when the filesystem never fills within `limit` bytes.
    pub fn fill(path: &Path, limit: u64) -> Result<Self, String> {
        let mut file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("create {}: {e}", path.display()))?;
        let mut filler = Self {
            path: path.to_path_buf(),
            bytes: 0,
        };
        let chunk = vec![0xA5u8; 1 << 20];
        let mut size = chunk.len();
        while size >= 4096 {
            match file.write(&chunk[..size]) {
                Ok(0) => size /= 2,
                Ok(n) => {
                    filler.bytes += n as u64;
                    if filler.bytes > limit {
                        return Err(format!(
                            "{} took {} bytes and the filesystem is still not full",
                            path.display(),
                            filler.bytes
                        ));
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => size /= 2,
                Err(e) => return Err(format!("write {}: {e}", path.display())),
            }
        }
        Ok(filler)
    }

    /// Returns how many bytes the filler took.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Removes the filler, giving its space back.
    pub fn free(self) {}
}

impl Drop for DiskFiller {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            eprintln!("removing {} failed: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_numbers_and_another_seed_others() {
        let draw = |seed| {
            let mut rng = SeededRng::new(seed);
            (0..16).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn ranges_and_weights_stay_in_bounds_and_respect_zero_weights() {
        let mut rng = SeededRng::new(1);
        let mut seen = [0usize; 3];
        for _ in 0..10_000 {
            let x = rng.between(3, 5);
            assert!((3..=5).contains(&x));
            seen[rng.weighted(&[1, 0, 3])] += 1;
        }
        assert_eq!(seen[1], 0, "weight 0 is never chosen");
        assert!(seen[2] > seen[0] * 2, "weights are proportions: {seen:?}");
    }
}
