// MLX's fast::precompiled_cuda_kernel for vlmbench's own PTX (mlx-c 0.7 does not expose it).
//
// Why a shim: MLX's custom-kernel API builds the kernel's whole source string and hashes it on
// every call, and compiles it with NVRTC in every new process (its PTX cache does not keep custom
// kernels): seconds at start and microseconds per launch, on a decode step of ~1000 launches.
// Here the PTX is compiled ahead of time (models/src/kernels/qgemv4.ptx) and written once per
// process into MLX's PTX cache under the module name MLX derives for a short tag, so that MLX
// loads it from there and each launch hashes only the tag. Where the cache cannot be written,
// the PTX text itself is the source (correct, just slower per launch).
//
// Relies on MLX 0.32's CUDA backend (mlx/backend/cuda/custom_kernel.cpp, jit_module.cpp): a
// precompiled kernel's module is named "<name>_<std::hash(source) in hex>" and looked up first as
// "<cache dir>/<module>.ptx" with "<module>.txt" listing "<kernel>\t<symbol>" lines; the cache dir
// is $MLX_PTX_CACHE_DIR or <temp dir>/mlx/<version>/ptx. vlmbench pins MLX 0.32.2.

#include "mlx/c/private/mlx.h"
#include "mlx/fast.h"
#include "mlx/version.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

void set_error(char* err, size_t err_len, const std::string& message) {
  if (err && err_len > 0) {
    std::snprintf(err, err_len, "%s", message.c_str());
  }
}

// MLX's choice, exactly: an empty MLX_PTX_CACHE_DIR means no cache (an empty path here).
std::filesystem::path mlx_ptx_cache_dir() {
  if (const char* dir = std::getenv("MLX_PTX_CACHE_DIR"); dir) {
    return dir;
  }
  return std::filesystem::temp_directory_path() / "mlx" / mlx::core::version() / "ptx";
}

std::string hex(size_t value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%zx", value);
  return buf;
}

// Writes `path` atomically (several ranks of one machine may write the same module at once).
bool write_file(const std::filesystem::path& path, const std::string& text) {
  auto tmp = path;
  tmp += ".vlmbench-" + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out.write(text.data(), text.size())) {
      return false;
    }
  }
  std::error_code error;
  std::filesystem::rename(tmp, path, error);
  return !error;
}

} // namespace

struct vlmbench_kernel {
  std::string name;   // the PTX entry symbol
  std::string source; // what MLX hashes per launch: the short tag, or the PTX itself
  bool cached;
};

extern "C" {

// Registered kernels live for the process (MLX may run them until exit), so there is no free.
vlmbench_kernel* vlmbench_kernel_new(
    const char* name,
    const char* ptx,
    size_t ptx_len,
    char* err,
    size_t err_len) {
  try {
    std::string text(ptx, ptx_len);
    // Owned until returned: an exception below (a filesystem error) frees it.
    auto kernel = std::make_unique<vlmbench_kernel>(vlmbench_kernel{name, "", false});
    // The tag names the PTX's content, so a file left by another build is never taken for ours.
    std::string tag = "vlmbench precompiled " + hex(std::hash<std::string>{}(text));
    std::string module = kernel->name + "_" + hex(std::hash<std::string>{}(tag));
    std::error_code error;
    auto dir = mlx_ptx_cache_dir();
    if (!dir.empty()) {
      std::filesystem::create_directories(dir, error);
    }
    if (!dir.empty() && module.size() <= 245 && write_file(dir / (module + ".txt"), kernel->name + "\t" + kernel->name + "\n") &&
        write_file(dir / (module + ".ptx"), text)) {
      kernel->source = std::move(tag);
      kernel->cached = true;
    } else {
      kernel->source = std::move(text);
    }
    return kernel.release();
  } catch (const std::exception& e) {
    set_error(err, err_len, e.what());
    return nullptr;
  }
}

bool vlmbench_kernel_is_cached(const vlmbench_kernel* kernel) {
  return kernel->cached;
}

// Launches `kernel` over `grid_x` threads in blocks of `block_x`: arguments are the inputs' data
// pointers, then the outputs' (shapes `shapes`, `ndims[i]` dimensions each, dtypes `dtypes`),
// then the int scalars. Writes `n_outputs` new arrays to `outputs`; 0 on success.
int vlmbench_kernel_apply(
    const vlmbench_kernel* kernel,
    const mlx_array* inputs,
    size_t n_inputs,
    const int* shapes,
    const size_t* ndims,
    const mlx_dtype* dtypes,
    size_t n_outputs,
    const int* scalars,
    size_t n_scalars,
    int grid_x,
    int block_x,
    mlx_stream stream,
    mlx_array* outputs,
    char* err,
    size_t err_len) {
  try {
    std::vector<mlx::core::array> in;
    in.reserve(n_inputs);
    for (size_t i = 0; i < n_inputs; ++i) {
      in.push_back(mlx_array_get_(inputs[i]));
    }
    std::vector<mlx::core::Shape> out_shapes;
    std::vector<mlx::core::Dtype> out_dtypes;
    for (size_t i = 0; i < n_outputs; ++i) {
      out_shapes.emplace_back(shapes, shapes + ndims[i]);
      shapes += ndims[i];
      out_dtypes.push_back(mlx_dtype_to_cpp(dtypes[i]));
    }
    std::vector<mlx::core::fast::ScalarArg> args(scalars, scalars + n_scalars);
    auto result = mlx::core::fast::precompiled_cuda_kernel(
        kernel->name,
        kernel->source,
        in,
        out_shapes,
        out_dtypes,
        args,
        {grid_x, 1, 1},
        {block_x, 1, 1},
        0,
        std::nullopt,
        true, // the kernels read flat rows: MLX copies a strided view first (a flag check otherwise)
        mlx_stream_get_(stream));
    for (size_t i = 0; i < n_outputs; ++i) {
      outputs[i] = mlx_array_new_(std::move(result[i]));
    }
    return 0;
  } catch (const std::exception& e) {
    set_error(err, err_len, e.what());
    return 1;
  }
}

} // extern "C"
