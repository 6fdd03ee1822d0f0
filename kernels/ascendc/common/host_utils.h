// Host-side helpers shared by the PyTorch bindings (rms_norm_host.cpp, rope_host.cpp): launch a
// kernel on torch_npu's current stream through its task queue, ship a tiling struct to the device,
// ask the platform for the AI vector core count and UB size.
//
// NEVER COMPILED where it was written (needs torch_npu and CANN headers): see kernels/README.md.
// Pattern followed: Ascend/op-plugin examples/cpp_extension/csrc/host/utils.h (EXEC_KERNEL_CMD:
// ACLRT_LAUNCH_KERNEL inside at_npu::native::OpCommand::RunOpApi) and its use of
// platform_ascendc::PlatformAscendCManager.
#ifndef ASCEND_TOOLS_HOST_UTILS_H
#define ASCEND_TOOLS_HOST_UTILS_H
#include <cstring>
#include <tuple>

#include <ATen/ATen.h>
#include <torch/library.h>

#include "acl/acl.h"
#include "tiling/platform/platform_ascendc.h"
#include "torch_npu/csrc/core/npu/NPUStream.h"
#include "torch_npu/csrc/framework/OpCommand.h"

#include "tiling_math.h"

namespace ascend_tools_kernels {

// Device address of a tensor's first element (data_ptr honours the storage offset; callers pass
// contiguous tensors). Everything else passes through unchanged.
inline void* LaunchArg(const at::Tensor& t) { return const_cast<void*>(t.data_ptr()); }
template <typename T>
T LaunchArg(T value) { return value; }

template <typename... Ts>
auto LaunchArgs(const Ts&... args) { return std::make_tuple(LaunchArg(args)...); }

// Enqueue `kernel_name` (an extern "C" __global__ __aicore__ function compiled by ascendc_library,
// whose aclrtlaunch_<name>.h the build generates) on the current NPU stream.
#define ASCEND_TOOLS_LAUNCH(kernel_name, blockdim, ...)                                                  \
    do {                                                                                               \
        auto launch_args = ::ascend_tools_kernels::LaunchArgs(__VA_ARGS__);                            \
        uint32_t launch_dim = (blockdim);                                                              \
        auto acl_call = [launch_dim, launch_args]() -> int {                                           \
            auto acl_stream = c10_npu::getCurrentNPUStream().stream(false);                            \
            return std::apply(                                                                         \
                [&](auto&&... params) -> int {                                                         \
                    return static_cast<int>(ACLRT_LAUNCH_KERNEL(kernel_name)(launch_dim, acl_stream, params...)); \
                },                                                                                     \
                launch_args);                                                                          \
        };                                                                                             \
        at_npu::native::OpCommand::RunOpApi(#kernel_name, acl_call);                                   \
    } while (false)

struct Platform {
    uint32_t aivCores;
    uint64_t ubBytes;
};

inline Platform GetPlatform() {
    auto* platform = platform_ascendc::PlatformAscendCManager::GetInstance();
    TORCH_CHECK(platform != nullptr, "ascend_tools kernels: PlatformAscendCManager is unavailable");
    uint64_t ub = 0;
    platform->GetCoreMemSize(platform_ascendc::CoreMemType::UB, ub);
    uint32_t cores = platform->GetCoreNumAiv();
    if (ub == 0) ub = ascend_tools::tiling::kDefaultUbBytes;
    if (cores == 0) cores = 1;
    return {cores, ub};
}

// The tiling struct as a device byte tensor (pinned host copy, non-blocking H2D on the current stream).
template <typename Tiling>
at::Tensor TilingToDevice(const Tiling& tiling, const at::Device& device) {
    at::Tensor host = at::empty({static_cast<int64_t>(sizeof(Tiling))}, at::TensorOptions().dtype(at::kByte));
    std::memcpy(host.data_ptr<uint8_t>(), &tiling, sizeof(Tiling));
    at::Tensor pinned = host.pin_memory();
    return pinned.to(device, at::kByte, /*non_blocking=*/true, /*copy=*/true);
}

inline void CheckNpu(const at::Tensor& t, const char* op, const char* name) {
    TORCH_CHECK(t.device().type() == c10::DeviceType::PrivateUse1, "ascend_tools::", op, ": ", name,
                " must be an NPU tensor, got ", t.device());
}

inline uint32_t DtypeBytes(const at::Tensor& t, const char* op) {
    auto st = t.scalar_type();
    TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, "ascend_tools::", op,
                ": dtype must be float32, float16 or bfloat16, got ", st);
    return static_cast<uint32_t>(t.element_size());
}

}  // namespace ascend_tools_kernels

#endif  // ASCEND_TOOLS_HOST_UTILS_H
