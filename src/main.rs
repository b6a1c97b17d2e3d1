use clap::Parser;

fn main() {
    restore_default_sigpipe();
    let cli = vlmbench::cli::Cli::parse();
    if let Err(e) = vlmbench::cli::run(cli) {
        eprintln!("error: {}", vlmbench::cli::one_line(&e));
        std::process::exit(1);
    }
}

/// Stop quietly when the reader of our output goes away (`vlmbench compare A B | head`), as Unix
/// filters do: Rust ignores SIGPIPE, which turns the next print into a panic.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
