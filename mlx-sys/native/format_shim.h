/* Force-included into mlx-c's C++ sources. GCC 12's libstdc++ has no std::format, which
 * mlx-c's mlx/c/private/io.h uses for five error messages with "{}" placeholders only.
 * Where the standard library lacks it, supply a minimal one that substitutes "{}" in order. */
#pragma once
#ifdef __cplusplus
#include <version>
#if !defined(__cpp_lib_format)
#include <sstream>
#include <string>
#include <string_view>

namespace std {
namespace vlmbench_format_detail {
inline void put(std::ostringstream& out, std::string_view& rest) { out << rest; rest = {}; }
template <class T, class... Rest>
void put(std::ostringstream& out, std::string_view& rest, const T& value, const Rest&... more) {
  auto at = rest.find("{}");
  if (at == std::string_view::npos) { out << rest; rest = {}; return; }
  out << rest.substr(0, at) << value;
  rest = rest.substr(at + 2);
  put(out, rest, more...);
}
}  // namespace vlmbench_format_detail

template <class... Args>
std::string format(std::string_view pattern, const Args&... args) {
  std::ostringstream out;
  vlmbench_format_detail::put(out, pattern, args...);
  return out.str();
}
}  // namespace std
#endif
#endif
