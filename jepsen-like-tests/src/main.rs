//! `jepsen-like-tests check|bench`: see [`jepsen_like_tests::cli`].
fn main() {
    std::process::exit(jepsen_like_tests::cli::main(std::env::args_os()));
}
