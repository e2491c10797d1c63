//! The file layer: the only place that talks to the disk for writing.
//!
//! [`FileLayer`] is a trait so tests can interpose [`FaultyLayer`], which
//! wraps the real glommio layer and fails chosen operations with ENOSPC or
//! EIO, or tears a write short; everything above it runs unchanged. The real
//! layer, [`DmaLayer`], opens O_DIRECT `DmaFile`s read+write through
//! `OpenOptions` and submits through the core's own io_uring.
//!
//! IOPOLL is kept off on purpose. glommio 0.9 sends a `DmaFile`'s reads and
//! writes to its IOPOLL ring whenever a probe read on the device's first
//! file succeeds, and on a device without poll queues (a virtio disk,
//! `queue/io_poll` = 0) it does: the kernel accepts IOPOLL there and
//! completes the write by interrupt, but only a polling `io_uring_enter`
//! reaps it. The executor never parks while that ring has I/O in the kernel
//! (`PollRing::can_sleep`), so every ~1 ms disk write cost ~1 ms of a core
//! spinning in `io_uring_enter` (BENCHMARKS.md, "Server durability"). glommio
//! has no public knob for this; it remembers the probe's answer per thread
//! and device, and a probe on a write-only file fails (EBADF) and records
//! "no IOPOLL". So before a core's first open on a device [`DmaLayer`] opens
//! a scratch file write-only, closes and removes it: every `DmaFile` on that
//! device then uses the main ring, where the executor sleeps while the disk
//! works. glommio logs that failed probe at error level under the target
//! `glommio::reactor` (its only message there); the server filters it out.
//!
//! Directory operations (rename, remove, directory fsync) are rare (open and
//! compaction) and go through glommio's async helpers too, so no blocking
//! system call runs on the executor on the write path.

use std::cell::RefCell;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

/// Creates and manipulates segment files for one core.
#[allow(async_fn_in_trait)]
pub trait FileLayer {
    /// `'static`: a flush in flight holds the live file in a task of its
    /// own.
    type File: LogFile + 'static;
    /// Opens `path` read+write for O_DIRECT appends, creating it when asked.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    async fn remove(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory, making renames, creations and removals durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open segment file.
#[allow(async_fn_in_trait)]
pub trait LogFile {
    /// Writes must start and end on multiples of this.
    fn alignment(&self) -> u64;
    fn alloc_buffer(&self, len: usize) -> DmaBuffer;
    /// Writes the whole of `buf` at `pos` (both aligned); a short write is an
    /// error, because a commit is only useful whole.
    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<()>;
    async fn fdatasync(&self) -> io::Result<()>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    async fn close(self) -> io::Result<()>;
}

/// The production layer: glommio `DmaFile`s on the core's io_uring.
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaLayer;

impl FileLayer for DmaLayer {
    type File = DmaFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<DmaFile> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        iopoll_off(dir).await?;
        Ok(OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await?)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        Ok(glommio::io::rename(from, to).await?)
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        Ok(glommio::io::remove(path).await?)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = glommio::io::Directory::open(dir).await?;
        dir.sync().await?;
        Ok(dir.close().await?)
    }
}

/// Devices one core may hold segment files on; past this many the core stops
/// turning IOPOLL off (its files on further devices then poll, i.e. spin).
pub const IOPOLL_OFF_DEVICES_MAX: usize = 8;
/// The scratch file whose write-only open makes glommio's IOPOLL probe fail.
pub const IOPOLL_OFF_FILE_NAME: &str = ".iopoll-off";

thread_local! {
    /// Devices (`st_dev`) this thread's glommio reactor already knows as
    /// non-IOPOLL. Per thread because glommio's probe cache is per thread.
    static IOPOLL_OFF_DEVICES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread already turned IOPOLL off for `dir`'s device.
#[cfg(test)]
fn iopoll_is_off(dir: &Path) -> io::Result<bool> {
    let device = std::fs::metadata(dir)?.dev();
    Ok(IOPOLL_OFF_DEVICES.with(|devices| devices.borrow().contains(&device)))
}

/// Makes glommio record `dir`'s device as non-IOPOLL for this thread, before
/// any read+write `DmaFile` on it lets the probe succeed (module docs). The
/// `stat` is a blocking call, but opens are rare (start-up, compaction).
async fn iopoll_off(dir: &Path) -> io::Result<()> {
    let device = std::fs::metadata(dir)?.dev();
    let known = IOPOLL_OFF_DEVICES.with(|devices| {
        let devices = devices.borrow();
        devices.contains(&device) || devices.len() >= IOPOLL_OFF_DEVICES_MAX
    });
    if known {
        return Ok(());
    }
    let scratch = dir.join(IOPOLL_OFF_FILE_NAME);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .dma_open(&scratch)
        .await?;
    file.close().await?;
    match glommio::io::remove(&scratch).await.map_err(io::Error::from) {
        Ok(()) => {}
        // Another core sharing the directory removed it first.
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    IOPOLL_OFF_DEVICES.with(|devices| {
        let mut devices = devices.borrow_mut();
        assert!(devices.len() < IOPOLL_OFF_DEVICES_MAX);
        devices.push(device);
    });
    Ok(())
}

impl LogFile for DmaFile {
    fn alignment(&self) -> u64 {
        DmaFile::alignment(self)
    }

    fn alloc_buffer(&self, len: usize) -> DmaBuffer {
        self.alloc_dma_buffer(len)
    }

    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<()> {
        let len = buf.len();
        let written = self.write_rc_at(buf, pos).await?;
        if written != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {written} of {len} bytes"),
            ));
        }
        Ok(())
    }

    async fn fdatasync(&self) -> io::Result<()> {
        Ok(DmaFile::fdatasync(self).await?)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        Ok(DmaFile::truncate(self, len).await?)
    }

    async fn close(self) -> io::Result<()> {
        Ok(DmaFile::close(self).await?)
    }
}

/// What [`FaultyLayer`] does to the next matching operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fail the next write with this errno, writing nothing.
    Write(i32),
    /// Fail the next fdatasync with this errno (the data may be on disk).
    Sync(i32),
    /// Write only the first `bytes` of the next write, then fail with EIO:
    /// what a power cut mid-write leaves behind.
    TornWrite { bytes: usize },
    /// Report the next write done without writing anything: what a power
    /// cut leaves of a write still queued in the device while later writes
    /// of the same flush reached the disk. Only a crash before the flush's
    /// fdatasync returns (a test drops the store after failing the sync)
    /// makes this a real device's behaviour.
    LostWrite,
}

/// Fault plan shared between a test and the files it opened.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    inner: Rc<RefCell<FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Faults fire in order, each once the operations it lets pass first
    /// (the count) went by; `sticky` keeps the last one firing (a full disk
    /// stays full until the test frees it).
    pending: Vec<(u64, Fault)>,
    sticky: Option<Fault>,
    fired: u64,
    /// Writes of the plan's files under way now, and the most ever at once.
    writes_in_flight: u64,
    writes_in_flight_max: u64,
}

impl FaultPlan {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a fault that fires once.
    pub fn inject(&self, fault: Fault) {
        self.inject_after(0, fault);
    }

    /// Queues a fault that fires once, on the matching operation after the
    /// next `pass` matching ones (a write in the middle of a flush).
    pub fn inject_after(&self, pass: u64, fault: Fault) {
        self.inner.borrow_mut().pending.push((pass, fault));
    }

    /// Makes a fault fire on every matching operation until [`clear`].
    ///
    /// [`clear`]: FaultPlan::clear
    pub fn inject_always(&self, fault: Fault) {
        self.inner.borrow_mut().sticky = Some(fault);
    }

    pub fn clear(&self) {
        let mut state = self.inner.borrow_mut();
        state.pending.clear();
        state.sticky = None;
    }

    /// How many faults have fired so far.
    pub fn fired(&self) -> u64 {
        self.inner.borrow().fired
    }

    /// The most writes the plan's files had under way at once.
    pub fn writes_in_flight_max(&self) -> u64 {
        self.inner.borrow().writes_in_flight_max
    }

    fn write_started(&self) -> WriteInFlight {
        let mut state = self.inner.borrow_mut();
        state.writes_in_flight += 1;
        state.writes_in_flight_max = state.writes_in_flight_max.max(state.writes_in_flight);
        WriteInFlight { plan: self.clone() }
    }

    fn take(&self, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut state = self.inner.borrow_mut();
        if let Some(fault) = state.sticky.filter(|f| matches(f)) {
            state.fired += 1;
            return Some(fault);
        }
        let index = state.pending.iter().position(|(_, f)| matches(f))?;
        let pass = &mut state.pending[index].0;
        if *pass > 0 {
            *pass -= 1;
            return None;
        }
        state.fired += 1;
        Some(state.pending.remove(index).1)
    }
}

/// Counts a write under way until dropped (completed or abandoned).
struct WriteInFlight {
    plan: FaultPlan,
}

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        let mut state = self.plan.inner.borrow_mut();
        assert!(state.writes_in_flight > 0);
        state.writes_in_flight -= 1;
    }
}

/// The real DMA layer with faults injected as a [`FaultPlan`] says.
#[derive(Clone, Debug, Default)]
pub struct FaultyLayer {
    pub plan: FaultPlan,
}

pub struct FaultyFile {
    file: DmaFile,
    plan: FaultPlan,
}

impl FileLayer for FaultyLayer {
    type File = FaultyFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<FaultyFile> {
        Ok(FaultyFile {
            file: DmaLayer.open(path, create).await?,
            plan: self.plan.clone(),
        })
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        DmaLayer.rename(from, to).await
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        DmaLayer.remove(path).await
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        DmaLayer.sync_dir(dir).await
    }
}

impl LogFile for FaultyFile {
    fn alignment(&self) -> u64 {
        self.file.alignment()
    }

    fn alloc_buffer(&self, len: usize) -> DmaBuffer {
        self.file.alloc_dma_buffer(len)
    }

    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<()> {
        let _in_flight = self.plan.write_started();
        let fault = self.plan.take(|f| {
            matches!(
                f,
                Fault::Write(_) | Fault::TornWrite { .. } | Fault::LostWrite
            )
        });
        match fault {
            Some(Fault::Write(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Some(Fault::LostWrite) => Ok(()),
            Some(Fault::TornWrite { bytes }) => {
                let keep = glommio_align_down(bytes as u64, self.file.alignment()) as usize;
                if keep > 0 {
                    let mut partial = self.file.alloc_dma_buffer(keep);
                    partial
                        .as_bytes_mut()
                        .copy_from_slice(&buf.as_bytes()[..keep]);
                    LogFile::write_at(&self.file, Rc::new(partial), pos).await?;
                }
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
            _ => LogFile::write_at(&self.file, buf, pos).await,
        }
    }

    async fn fdatasync(&self) -> io::Result<()> {
        if let Some(Fault::Sync(errno)) = self.plan.take(|f| matches!(f, Fault::Sync(_))) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        LogFile::fdatasync(&self.file).await
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        LogFile::truncate(&self.file, len).await
    }

    async fn close(self) -> io::Result<()> {
        LogFile::close(self.file).await
    }
}

fn glommio_align_down(value: u64, align: u64) -> u64 {
    value / align * align
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_open_turns_iopoll_off_and_leaves_no_scratch_file() {
        let dir = std::env::temp_dir().join(format!("tessera-iopoll-off-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let test_dir = dir.clone();
        glommio::LocalExecutorBuilder::default()
            .io_memory(512 << 10)
            .make()
            .expect("executor")
            .run(async move {
                assert!(!iopoll_is_off(&test_dir).unwrap());
                let file = DmaLayer.open(&test_dir.join("seg"), true).await.unwrap();
                assert!(iopoll_is_off(&test_dir).unwrap());
                assert!(!test_dir.join(IOPOLL_OFF_FILE_NAME).exists());
                // The file still writes and syncs through the main ring.
                let alignment = file.alignment() as usize;
                let mut buf = file.alloc_buffer(alignment);
                buf.as_bytes_mut().fill(7);
                LogFile::write_at(&file, Rc::new(buf), 0).await.unwrap();
                LogFile::fdatasync(&file).await.unwrap();
                // A second open on the device does not probe again.
                let again = DmaLayer.open(&test_dir.join("seg"), false).await.unwrap();
                assert!(!test_dir.join(IOPOLL_OFF_FILE_NAME).exists());
                again.close().await.unwrap();
                file.close().await.unwrap();
            });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
