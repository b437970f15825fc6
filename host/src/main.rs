//! The `weir` binary: everything lives in the library; see [`weir::cli`].

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
