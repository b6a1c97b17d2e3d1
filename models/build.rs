// Test binaries of this crate load libmlx at run time: point their rpath at the wheel mlx-sys linked.
fn main() {
    if let Ok(dir) = std::env::var("DEP_MLX_RUNTIME_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
