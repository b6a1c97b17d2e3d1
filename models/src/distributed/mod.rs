//! MLX's distributed layer (ring over TCP, MPI, NCCL) through mlx-c: joining the group of
//! processes and the two collectives tensor parallelism needs. mlx-rs 0.33 wraps none of it, so
//! this is the one place that calls `mlx_distributed_*` directly; everything else sees [`Group`].
//!
//! How the processes find each other is MLX's business and is configured by MLX's own environment
//! variables (see docs/distributed.md): `ring` reads `MLX_RANK` and `MLX_HOSTFILE` (a JSON list,
//! one entry per rank, of `"ip:port"` strings that rank listens on), `nccl` reads `MLX_RANK`,
//! `MLX_WORLD_SIZE`, `NCCL_HOST_IP` and `NCCL_PORT`, `mpi` takes its rank from `mpirun`.

pub mod loopback;

use std::ffi::{c_char, c_void, CStr, CString};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use mlx_rs::{Array, Stream};
use mlx_sys::{mlx_array, mlx_distributed_group};

/// A communication backend of MLX, by the name MLX uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// TCP sockets in a ring; CPU only; `MLX_RANK` + `MLX_HOSTFILE`.
    Ring,
    /// Any MPI implementation `mpirun` provides (`libmpi` loaded at run time).
    Mpi,
    /// NVIDIA's NCCL between CUDA GPUs; `MLX_RANK`, `MLX_WORLD_SIZE`, `NCCL_HOST_IP`, `NCCL_PORT`.
    Nccl,
    /// The first that initializes: NCCL when CUDA is present, then ring, then MPI.
    Any,
}

impl Backend {
    pub const ALL: [Backend; 4] = [Backend::Ring, Backend::Mpi, Backend::Nccl, Backend::Any];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Ring => "ring",
            Backend::Mpi => "mpi",
            Backend::Nccl => "nccl",
            Backend::Any => "any",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = DistributedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| DistributedError::UnknownBackend(s.to_string()))
    }
}

/// What can go wrong joining the group or communicating.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistributedError {
    #[error("unknown distributed backend {0:?}: expected ring, mpi, nccl or any")]
    UnknownBackend(String),
    #[error("the MLX distributed backend `{0}` is not available in this MLX build")]
    Unavailable(Backend),
    #[error("cannot join the MLX distributed group with backend `{backend}`: {reason}")]
    Init { backend: Backend, reason: String },
    #[error("MLX distributed {op} failed: {reason}")]
    Op { op: &'static str, reason: String },
}

type DResult<T> = std::result::Result<T, DistributedError>;

/// Membership of an MLX distributed group: this process's rank and the group's size.
/// Dropping it releases the handle (MLX keeps the backend's sockets for the process's lifetime:
/// `init` with the same backend again returns the same group).
pub struct Group {
    raw: mlx_distributed_group,
    backend: Backend,
    rank: i32,
    size: i32,
}

// SAFETY: the handle is a reference-counted pointer to MLX's group object, whose rank and size
// never change and whose collectives only add nodes to the lazy graph of the calling thread; MLX
// itself shares one group between threads.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("backend", &self.backend)
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: `raw` came from mlx_distributed_group_new and is freed exactly once.
        unsafe {
            mlx_sys::mlx_distributed_group_free(self.raw);
        }
    }
}

/// Whether MLX was built with `backend` (ring is always compiled in; MPI needs `libmpi` at run time).
pub fn is_available(backend: Backend) -> bool {
    let name = CString::new(backend.name()).expect("backend names have no NUL");
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    unsafe { mlx_sys::mlx_distributed_is_available(name.as_ptr()) }
}

impl Group {
    /// Joins the group of `backend` strictly: a process that cannot reach its peers, or has no
    /// rank/hostfile configured, gets an error with MLX's own message (a single process is not
    /// silently turned into a group of one). Blocks until every rank has connected (ring: each
    /// rank retries its right neighbour 5 times, one second apart, then fails).
    pub fn init(backend: Backend) -> DResult<Group> {
        if !is_available(backend) {
            return Err(DistributedError::Unavailable(backend));
        }
        let name = CString::new(backend.name()).expect("backend names have no NUL");
        // SAFETY: group_new returns an empty handle that init fills; it is freed by Drop, or
        // here when init fails.
        let mut raw = unsafe { mlx_sys::mlx_distributed_group_new() };
        let status = with_captured_errors(|| unsafe {
            mlx_sys::mlx_distributed_init(&mut raw, true, name.as_ptr())
        });
        if let Err(reason) = status {
            unsafe {
                mlx_sys::mlx_distributed_group_free(raw);
            }
            return Err(DistributedError::Init { backend, reason });
        }
        // SAFETY: a group handle MLX just initialized.
        let (rank, size) = unsafe {
            (
                mlx_sys::mlx_distributed_group_rank(raw),
                mlx_sys::mlx_distributed_group_size(raw),
            )
        };
        Ok(Group {
            raw,
            backend,
            rank,
            size,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's rank, `0..size`.
    pub fn rank(&self) -> i32 {
        self.rank
    }

    /// Number of processes in the group.
    pub fn size(&self) -> i32 {
        self.size
    }

    /// Elementwise sum of `x` over every rank (lazy; every rank must call it with the same shape
    /// and dtype, in the same order). The communication runs when the result is evaluated.
    pub fn all_sum(&self, x: &Array) -> DResult<Array> {
        self.collective("all_sum", x, mlx_sys::mlx_distributed_all_sum)
    }

    /// Every rank's `x` concatenated along axis 0, in rank order (lazy, as [`Group::all_sum`]).
    pub fn all_gather(&self, x: &Array) -> DResult<Array> {
        self.collective("all_gather", x, mlx_sys::mlx_distributed_all_gather)
    }

    /// Rank 0's `x` on every rank (lazy): an all_sum to which the other ranks add zeros.
    ///
    /// The other ranks' zeros still depend on their own `x` (`select(false, x, 0)`): a bare
    /// `zeros_like(x)` would not, so evaluating the result would skip the graph that computes `x`
    /// there, and that graph's own collectives would then run after this one on those ranks but
    /// before it on rank 0, a mismatch that deadlocks the ring.
    pub fn broadcast_from_rank0(&self, x: &Array) -> DResult<Array> {
        let op = |e: mlx_rs::error::Exception| DistributedError::Op {
            op: "broadcast",
            reason: e.what().to_string(),
        };
        let mine = if self.rank == 0 {
            x.clone()
        } else {
            mlx_rs::ops::select(
                Array::from_bool(false),
                x,
                mlx_rs::ops::zeros_like(x).map_err(op)?,
            )
            .map_err(op)?
        };
        self.all_sum(&mine)
    }

    /// Blocks until every rank has reached this point: a one-element all_sum, evaluated.
    pub fn barrier(&self) -> DResult<()> {
        let token = self.all_sum(&Array::from_int(1))?;
        mlx_rs::transforms::eval([&token]).map_err(|e| DistributedError::Op {
            op: "barrier",
            reason: e.what().to_string(),
        })
    }

    fn collective(
        &self,
        op: &'static str,
        x: &Array,
        f: unsafe extern "C" fn(
            *mut mlx_array,
            mlx_array,
            mlx_distributed_group,
            mlx_sys::mlx_stream,
        ) -> i32,
    ) -> DResult<Array> {
        let stream = Stream::thread_local_or_default();
        // SAFETY: `res` starts as an empty array handle; on success it owns the result and is
        // handed to Array (which frees it), on failure it is freed here.
        unsafe {
            let mut res = mlx_sys::mlx_array_new();
            let status = f(&mut res, x.as_ptr(), self.raw, stream.as_ptr());
            if status != 0 {
                mlx_sys::mlx_array_free(res);
                // MLX's message went to mlx-rs's error stash (where the next failing mlx-rs call
                // replaces it); the arguments say enough to find the cause.
                return Err(DistributedError::Op {
                    op,
                    reason: format!(
                        "status {status} for a {:?} array of shape {:?} in a group of {}",
                        x.dtype(),
                        x.shape(),
                        self.size
                    ),
                });
            }
            Ok(Array::from_ptr(res))
        }
    }
}

extern "C" {
    /// mlx-rs 0.33's process-wide MLX error handler (exported unmangled by mlx-rs); restored after
    /// [`with_captured_errors`] so that every other call keeps mlx-rs's error reporting.
    fn default_mlx_error_handler(msg: *const c_char, data: *mut c_void);
}

static HANDLER_SWAP: Mutex<()> = Mutex::new(());

unsafe extern "C" fn capture_error(msg: *const c_char, data: *mut c_void) {
    if msg.is_null() || data.is_null() {
        return;
    }
    let slot = &mut *(data as *mut Option<String>);
    *slot = Some(CStr::from_ptr(msg).to_string_lossy().into_owned());
}

/// mlx-c keeps the handler's `data` pointer only when a destructor comes with it; the slot is
/// owned by the caller's stack frame, so there is nothing to free.
unsafe extern "C" fn keep_slot(_data: *mut c_void) {}

/// Runs one mlx-c call that returns a status with MLX's error handler pointed at a local slot, so
/// that a failure comes back with MLX's message (mlx-rs keeps its last message private). Used
/// only for joining the group, once per process: the handler is process-global.
fn with_captured_errors(call: impl FnOnce() -> i32) -> Result<(), String> {
    // Make mlx-rs install its handler first (it does so once, on its first fallible call), so
    // that it cannot replace ours half-way or be skipped when we restore it.
    let _ = mlx_rs::ops::zeros::<f32>(&[1]);
    let _guard = HANDLER_SWAP.lock().unwrap_or_else(|p| p.into_inner());
    let mut slot: Option<String> = None;
    // SAFETY: `slot` outlives the call; the handler is restored before the slot goes away.
    let status = unsafe {
        mlx_sys::mlx_set_error_handler(
            Some(capture_error),
            &mut slot as *mut Option<String> as *mut c_void,
            Some(keep_slot),
        );
        let status = call();
        mlx_sys::mlx_set_error_handler(Some(default_mlx_error_handler), std::ptr::null_mut(), None);
        status
    };
    match status {
        0 => Ok(()),
        s => Err(slot.unwrap_or_else(|| format!("MLX returned status {s} without a message"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip_and_unknown_names_are_refused() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        let err = "tcp".parse::<Backend>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown distributed backend \"tcp\": expected ring, mpi, nccl or any"
        );
    }

    #[test]
    fn the_ring_backend_is_compiled_in() {
        assert!(is_available(Backend::Ring));
    }

    /// Without MLX_RANK/MLX_HOSTFILE a strict ring init must fail with MLX's own explanation,
    /// not exit the process or hang. (The variables are only read, so clearing them for this
    /// process is enough; tests that set them run in child processes.)
    #[test]
    fn joining_a_ring_without_rank_or_hostfile_fails_with_mlx_s_message() {
        if std::env::var_os("MLX_RANK").is_some() || std::env::var_os("MLX_HOSTFILE").is_some() {
            eprintln!("skipped: MLX_RANK/MLX_HOSTFILE are set in this environment");
            return;
        }
        let err = Group::init(Backend::Ring).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot join the MLX distributed group with backend `ring`: "),
            "{text}"
        );
        assert!(
            text.contains("MLX_RANK") && text.contains("MLX_HOSTFILE"),
            "{text}"
        );
        // mlx-rs's own error reporting is back in place afterwards.
        let bad =
            mlx_rs::ops::reshape(Array::from_slice(&[1f32, 2.0, 3.0], &[3]), &[2]).unwrap_err();
        assert!(bad.what().contains("reshape"), "{}", bad.what());
    }
}
