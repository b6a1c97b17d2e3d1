//! A fork-join team for the parallel loops of a decode step on the CPU.
//!
//! A decode step opens a few hundred short parallel loops (one per product, a few per layer)
//! with a little serial work between them. Rayon's idle workers go to sleep within
//! microseconds and are woken through the kernel, so many of those loops start with a thread
//! wake-up, and a core sits idle meanwhile. The team's workers instead wait for the next loop
//! by spinning for a short while ([`SPIN`]) before they sleep, as llama.cpp's thread pool does:
//! back-to-back loops reach running threads. The calling thread always takes part, so a loop
//! finishes even when no worker comes (asleep, descheduled, or the team busy with another
//! caller's loop, in which case the caller runs its loop alone).

use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker keeps spinning for the next loop before it sleeps: longer than the
/// serial work between a step's loops, short enough that a finished generation soon frees the
/// cores.
const SPIN: Duration = Duration::from_millis(2);

/// One parallel loop: `tasks` calls of `run`, each index claimed once through `next`.
struct Job<'a> {
    run: &'a (dyn Fn(usize) + Sync),
    tasks: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
}

impl Job<'_> {
    /// Claims and runs tasks until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, SeqCst);
            if i >= self.tasks {
                return;
            }
            if panic::catch_unwind(AssertUnwindSafe(|| (self.run)(i))).is_err() {
                self.panicked.store(true, SeqCst);
            }
            self.done.fetch_add(1, SeqCst);
        }
    }
}

struct Team {
    workers: usize,
    /// The published job (null between loops); its lifetime is erased, see [`Team::run`].
    job: AtomicPtr<Job<'static>>,
    /// Bumped for every job, so waiting workers see a new one.
    generation: AtomicU64,
    /// Workers between reading `job` and finishing with it.
    inside: AtomicUsize,
    /// Held by the thread whose loop the team runs.
    busy: Mutex<()>,
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

impl Team {
    fn global() -> &'static Team {
        static TEAM: OnceLock<&'static Team> = OnceLock::new();
        TEAM.get_or_init(|| {
            let team: &'static Team = Box::leak(Box::new(Team {
                workers: rayon::current_num_threads().saturating_sub(1),
                job: AtomicPtr::new(std::ptr::null_mut()),
                generation: AtomicU64::new(0),
                inside: AtomicUsize::new(0),
                busy: Mutex::new(()),
                sleepers: AtomicUsize::new(0),
                sleep: Mutex::new(()),
                wake: Condvar::new(),
            }));
            for i in 0..team.workers {
                std::thread::Builder::new()
                    .name(format!("vlmbench-cpu-{i}"))
                    .spawn(move || team.serve())
                    .expect("spawn a CPU worker thread");
            }
            team
        })
    }

    fn serve(&self) {
        let mut seen = 0;
        loop {
            seen = self.next_generation(seen);
            self.inside.fetch_add(1, SeqCst);
            let job = self.job.load(SeqCst);
            if !job.is_null() {
                // SAFETY: `run` keeps the job alive until `inside` is back to zero, and this
                // worker counted itself in before it read the pointer.
                unsafe { (*job).work() };
            }
            self.inside.fetch_sub(1, SeqCst);
        }
    }

    /// Waits for a generation after `seen`: spinning, then asleep.
    fn next_generation(&self, seen: u64) -> u64 {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let g = self.generation.load(SeqCst);
            if g != seen {
                return g;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 256 == 0 && start.elapsed() > SPIN {
                break;
            }
        }
        let mut guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, SeqCst);
        loop {
            let g = self.generation.load(SeqCst);
            if g != seen {
                self.sleepers.fetch_sub(1, SeqCst);
                return g;
            }
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs `job` on this thread and whichever workers join, and returns once every task is
    /// done and no worker holds the job any more.
    fn run(&self, job: &Job<'_>) {
        let Ok(_busy) = self.busy.try_lock() else {
            // Another thread's loop (or this one's, nested) has the team.
            job.work();
            return;
        };
        // SAFETY (lifetime): the pointer is withdrawn below, and this function waits for every
        // worker that may have read it to leave before `job` goes out of scope.
        let ptr = job as *const Job<'_> as *mut Job<'static>;
        self.job.store(ptr, SeqCst);
        self.generation.fetch_add(1, SeqCst);
        if self.sleepers.load(SeqCst) > 0 {
            let _guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
        job.work();
        while job.done.load(SeqCst) < job.tasks {
            std::hint::spin_loop();
        }
        self.job.store(std::ptr::null_mut(), SeqCst);
        while self.inside.load(SeqCst) > 0 {
            std::hint::spin_loop();
        }
    }
}

/// An item handed to exactly one task.
struct Slot<T>(UnsafeCell<Option<T>>);

// SAFETY: each slot is taken by the one task that claimed its index.
unsafe impl<T: Send> Sync for Slot<T> {}

/// Calls `f` on every item, spread over the team (see the module doc); returns when all are
/// done. A panic in `f` is raised again here.
pub fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync) {
    if items.len() <= 1 {
        items.into_iter().for_each(f);
        return;
    }
    let slots: Vec<Slot<T>> = items
        .into_iter()
        .map(|t| Slot(UnsafeCell::new(Some(t))))
        .collect();
    let run = |i: usize| {
        // SAFETY: index `i` is claimed by one task only (`Job::work`).
        let item = unsafe { (*slots[i].0.get()).take() };
        if let Some(item) = item {
            f(item);
        }
    };
    let job = Job {
        run: &run,
        tasks: slots.len(),
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
    };
    Team::global().run(&job);
    if job.panicked.load(SeqCst) {
        panic!("a CPU kernel task panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_handed_to_exactly_one_call_across_many_loops() {
        for n in [0usize, 1, 2, 7, 64, 1000] {
            let mut out = vec![0u32; n];
            for _ in 0..20 {
                let items: Vec<(usize, &mut u32)> = out.iter_mut().enumerate().collect();
                for_each(items, |(i, o)| *o += i as u32 + 1);
            }
            assert!(out
                .iter()
                .enumerate()
                .all(|(i, &v)| v == 20 * (i as u32 + 1)));
        }
    }

    #[test]
    fn loops_from_several_threads_at_once_all_complete() {
        std::thread::scope(|s| {
            for t in 0..4u64 {
                s.spawn(move || {
                    for _ in 0..50 {
                        let mut sums = [0u64; 16];
                        let items: Vec<&mut u64> = sums.iter_mut().collect();
                        for_each(items, |o| *o = t);
                        assert!(sums.iter().all(|&v| v == t));
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_task_is_raised_on_the_caller() {
        let result = panic::catch_unwind(|| {
            for_each((0..8).collect(), |i: i32| assert!(i != 5, "task 5"));
        });
        assert!(result.is_err());
        // The team still runs later loops.
        let mut out = [0u8; 8];
        for_each(out.iter_mut().collect(), |o| *o = 1);
        assert!(out.iter().all(|&v| v == 1));
    }
}
