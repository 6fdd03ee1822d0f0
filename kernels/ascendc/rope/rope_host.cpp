// PyTorch binding of the RoPE kernel: torch.ops.ascend_tools.rope (PrivateUse1 = NPU).
//
//   rope(Tensor x, Tensor cos, Tensor sin, int layout=0, bool backward=False) -> Tensor
//   x: [B, N, S, D] (layout 0, BNSD) or [B, S, N, D] (layout 1, BSND); cos, sin: [Bc, S, D], Bc in {1, B},
//   all one dtype. backward=False: x*cos + rotate_half(x)*sin; backward=True: the gradient wrt x of
//   that map applied to the upstream gradient passed as x (cos/sin gradients are left to Python).
//
// NEVER COMPILED where it was written (needs CANN + torch_npu): see kernels/README.md.
#include "aclrtlaunch_ascend_tools_rope_bf16.h"
#include "aclrtlaunch_ascend_tools_rope_fp16.h"
#include "aclrtlaunch_ascend_tools_rope_fp32.h"
#include "host_utils.h"

namespace ascend_tools_kernels {

at::Tensor Rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t layout, bool backward) {
    using namespace ascend_tools::tiling;
    CheckNpu(x, "rope", "x");
    CheckNpu(cos, "rope", "cos");
    CheckNpu(sin, "rope", "sin");
    const uint32_t bytes = DtypeBytes(x, "rope");
    TORCH_CHECK(cos.scalar_type() == x.scalar_type() && sin.scalar_type() == x.scalar_type(),
                "ascend_tools::rope: x, cos and sin must share one dtype");
    TORCH_CHECK(x.dim() == 4, "ascend_tools::rope: x must be 4-D, got ", x.sizes());
    TORCH_CHECK(layout == ROPE_LAYOUT_BNSD || layout == ROPE_LAYOUT_BSND, "ascend_tools::rope: layout must be 0 or 1");
    TORCH_CHECK(cos.dim() == 3 && cos.sizes() == sin.sizes(), "ascend_tools::rope: cos and sin must be [Bc, S, D]");
    const int64_t b = x.size(0);
    const int64_t n = layout == ROPE_LAYOUT_BNSD ? x.size(1) : x.size(2);
    const int64_t s = layout == ROPE_LAYOUT_BNSD ? x.size(2) : x.size(1);
    const int64_t d = x.size(3);
    TORCH_CHECK(cos.size(1) == s && cos.size(2) == d && (cos.size(0) == 1 || cos.size(0) == b),
                "ascend_tools::rope: cos/sin ", cos.sizes(), " do not match x ", x.sizes());

    const at::Tensor xc = x.contiguous();
    const at::Tensor cc = cos.contiguous();
    const at::Tensor sc = sin.contiguous();
    at::Tensor y = at::empty_like(xc);
    if (xc.numel() == 0) {
        return y;
    }
    const Platform platform = GetPlatform();
    RopeTilingData tiling{};
    const Status status = ComputeRopeTiling(b, n, s, d, cos.size(0), static_cast<uint32_t>(layout), bytes,
                                            platform.aivCores, platform.ubBytes, backward, &tiling);
    TORCH_CHECK(status == Status::kOk, "ascend_tools::rope: ", StatusMessage(status), " (x ", x.sizes(), ")");
    at::Tensor tilingDev = TilingToDevice(tiling, x.device());
    const uint32_t blockDim = tiling.usedCores;

    switch (x.scalar_type()) {
        case at::kFloat:
            ASCEND_TOOLS_LAUNCH(ascend_tools_rope_fp32, blockDim, xc, cc, sc, y, tilingDev);
            break;
        case at::kHalf:
            ASCEND_TOOLS_LAUNCH(ascend_tools_rope_fp16, blockDim, xc, cc, sc, y, tilingDev);
            break;
        default:
            ASCEND_TOOLS_LAUNCH(ascend_tools_rope_bf16, blockDim, xc, cc, sc, y, tilingDev);
            break;
    }
    return y;
}

}  // namespace ascend_tools_kernels

TORCH_LIBRARY_FRAGMENT(ascend_tools, m) {
    m.def("rope(Tensor x, Tensor cos, Tensor sin, int layout=0, bool backward=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(ascend_tools, PrivateUse1, m) {
    m.impl("rope", TORCH_FN(ascend_tools_kernels::Rope));
}
