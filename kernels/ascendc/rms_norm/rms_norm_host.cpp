// PyTorch binding of the RMSNorm kernel: torch.ops.ascend_tools.rms_norm (PrivateUse1 = NPU).
//
//   rms_norm(Tensor x, Tensor weight, float eps=1e-06, float offset=0.0, int casting=0) -> (Tensor y, Tensor rstd)
//   casting: 0 = llama (y = (weight + offset) * T(x_hat)), 1 = gemma (y = T(x_hat * (offset + float(weight))))
//   y: x's shape and dtype; rstd: float32, x's shape without the last dim.
// Forward only: ascend_tools/ops/ascendc.py computes the backward from (x, weight, rstd) with the
// reference formulas.
//
// NEVER COMPILED where it was written (needs CANN + torch_npu): see kernels/README.md.
#include "aclrtlaunch_ascend_tools_rms_norm_bf16.h"
#include "aclrtlaunch_ascend_tools_rms_norm_fp16.h"
#include "aclrtlaunch_ascend_tools_rms_norm_fp32.h"
#include "host_utils.h"

namespace ascend_tools_kernels {

std::tuple<at::Tensor, at::Tensor> RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps, double offset,
                                           int64_t casting) {
    using namespace ascend_tools::tiling;
    CheckNpu(x, "rms_norm", "x");
    CheckNpu(weight, "rms_norm", "weight");
    const uint32_t bytes = DtypeBytes(x, "rms_norm");
    TORCH_CHECK(x.dim() >= 1, "ascend_tools::rms_norm: x must have at least one dim");
    TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1), "ascend_tools::rms_norm: weight must be [",
                x.size(-1), "], got ", weight.sizes());
    TORCH_CHECK(casting == 0 || casting == 1, "ascend_tools::rms_norm: casting must be 0 (llama) or 1 (gemma)");

    const at::Tensor xc = x.contiguous();
    // gamma in fp32, prepared so the kernel applies one rule per casting mode (see rms_norm_kernel.cpp).
    at::Tensor gamma = casting == 0 ? (offset != 0.0 ? weight.add(offset) : weight).to(x.scalar_type()).to(at::kFloat)
                                    : weight.to(at::kFloat).add(offset);
    gamma = gamma.contiguous();

    at::Tensor y = at::empty_like(xc);
    std::vector<int64_t> rstdShape(x.sizes().begin(), x.sizes().end() - 1);
    at::Tensor rstd = at::empty(rstdShape, xc.options().dtype(at::kFloat));
    const uint64_t cols = static_cast<uint64_t>(x.size(-1));
    const uint64_t rows = cols == 0 ? 0 : static_cast<uint64_t>(xc.numel()) / cols;
    if (rows == 0 || cols == 0) {
        return {y, rstd};
    }

    const Platform platform = GetPlatform();
    RmsNormTilingData tiling{};
    const Status status = ComputeRmsNormTiling(rows, cols, bytes, platform.aivCores, platform.ubBytes,
                                               static_cast<float>(eps), static_cast<uint32_t>(casting), &tiling);
    TORCH_CHECK(status == Status::kOk, "ascend_tools::rms_norm: ", StatusMessage(status), " (rows ", rows, ", cols ",
                cols, ")");
    at::Tensor tilingDev = TilingToDevice(tiling, x.device());
    const uint32_t blockDim = tiling.usedCores;

    switch (x.scalar_type()) {
        case at::kFloat:
            ASCEND_TOOLS_LAUNCH(ascend_tools_rms_norm_fp32, blockDim, xc, gamma, y, rstd, tilingDev);
            break;
        case at::kHalf:
            ASCEND_TOOLS_LAUNCH(ascend_tools_rms_norm_fp16, blockDim, xc, gamma, y, rstd, tilingDev);
            break;
        default:
            ASCEND_TOOLS_LAUNCH(ascend_tools_rms_norm_bf16, blockDim, xc, gamma, y, rstd, tilingDev);
            break;
    }
    return {y, rstd};
}

}  // namespace ascend_tools_kernels

TORCH_LIBRARY_FRAGMENT(ascend_tools, m) {
    m.def("rms_norm(Tensor x, Tensor weight, float eps=1e-06, float offset=0.0, int casting=0) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(ascend_tools, PrivateUse1, m) {
    m.impl("rms_norm", TORCH_FN(ascend_tools_kernels::RmsNorm));
}
