// RoPE (rotate_half convention) as an AscendC vector kernel (Atlas A2/A3, dav-c220), forward and
// the gradient with respect to x (its transpose).
//
// NEVER COMPILED OR RUN where it was written (no CANN there): see kernels/README.md for what was
// verified where. API followed: CANN 8.x AscendC basic APIs (TPipe, TQue, TBuf, GlobalTensor,
// LocalTensor, DataCopyPad with DataCopyExtParams strides, Cast, Mul, Add, Sub, PipeBarrier),
// launched with ACLRT_LAUNCH_KERNEL from rope_host.cpp.
//
// Semantics (= HF apply_rotary_pos_emb, = torch_npu.npu_rotary_mul rotary_mode='half'), per head
// vector x = [x1 | x2] of D = 2h elements, with its cos = [c1 | c2], sin = [s1 | s2]:
//   forward : y1 = x1*c1 - x2*s1          y2 = x2*c2 + x1*s2        (= x*cos + rotate_half(x)*sin)
//   backward: g1 = d1*c1 + d2*s2          g2 = d2*c2 - d1*s1        (dL/dx for upstream d = [d1 | d2])
// computed in fp32 and rounded once to the input dtype (the eager HF chain rounds after each op in
// 16-bit dtypes: differences are within an ulp or two of the output).
//
// Layouts (rope_tiling.h): x[B, N, S, D] (BNSD) or x[B, S, N, D] (BSND); cos/sin[Bc, S, D] with Bc in
// {1, B}, broadcast over heads. Rows (head vectors) are split over AI cores; a UB tile of rows never
// crosses a cos/sin segment: BNSD tiles are runs of s inside one (b, n), whose cos rows are
// consecutive (one vector op per tile); BSND tiles are heads of one (b, s), which share one cos row
// (one vector op per row against that row). The halves are copied into separate 32-byte-aligned UB
// regions with strided DataCopyPad, so any even D works (64, 80, 128, ...).
#include "kernel_operator.h"
#include "rope_tiling.h"

namespace {

constexpr int32_t BUFFER_NUM = 2;

template <typename A, typename B>
struct IsSame {
    static constexpr bool value = false;
};
template <typename A>
struct IsSame<A, A> {
    static constexpr bool value = true;
};

__aicore__ inline void LoadTiling(GM_ADDR tilingGm, RopeTilingData* tiling)
{
    auto src = reinterpret_cast<__gm__ uint32_t*>(tilingGm);
    auto dst = reinterpret_cast<uint32_t*>(tiling);
    for (uint32_t i = 0; i < sizeof(RopeTilingData) / sizeof(uint32_t); ++i) {
        dst[i] = src[i];
    }
}

template <typename T>
class KernelRope {
public:
    __aicore__ inline KernelRope() {}

    __aicore__ inline void Init(GM_ADDR x, GM_ADDR cos, GM_ADDR sin, GM_ADDR y, const RopeTilingData& t)
    {
        t_ = t;
        const uint32_t block = AscendC::GetBlockIdx();
        rowCount_ = 0;
        if (block < t.usedCores) {
            rowCount_ = (block + 1 < t.usedCores) ? t.rowsPerCore : t.tailCoreRows;
        }
        rowStart_ = static_cast<uint64_t>(block) * t.rowsPerCore;
        const uint64_t d = t.headDim;
        xGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(x), static_cast<uint64_t>(t.rows) * d);
        yGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(y), static_cast<uint64_t>(t.rows) * d);
        const uint64_t cosElems = static_cast<uint64_t>(t.cosBatch) * t.seq * d;
        cosGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(cos), cosElems);
        sinGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(sin), cosElems);

        // Exactly the buffers counted by RopeUbBytesPerRow() in common/tiling_math.h.
        region_ = t.tileRows * t.halfAligned;  // elements of one half-region (tileRows rows of one half)
        pipe_.InitBuffer(inQueueX_, BUFFER_NUM, 2 * region_ * sizeof(T));    // x1 | x2
        pipe_.InitBuffer(inQueueCS_, BUFFER_NUM, 4 * region_ * sizeof(T));   // c1 | c2 | s1 | s2
        pipe_.InitBuffer(outQueueY_, BUFFER_NUM, 2 * region_ * sizeof(T));   // y1 | y2
        pipe_.InitBuffer(f32Buf_, (IsSame<T, float>::value ? 1 : 9) * region_ * sizeof(float));
    }

    __aicore__ inline void Process()
    {
        uint64_t row = rowStart_;
        const uint64_t end = rowStart_ + rowCount_;
        while (row < end) {
            const uint32_t len = TileLen(row, end);
            CopyIn(row, len);
            Compute(len);
            CopyOut(row, len);
            row += len;
        }
    }

private:
    __aicore__ inline bool SharedCos() const { return t_.layout == ROPE_LAYOUT_BSND; }

    // Mirrors RopeTileLen() in common/tiling_math.h (unit-tested there).
    __aicore__ inline uint32_t TileLen(uint64_t row, uint64_t end) const
    {
        const uint64_t segment = t_.layout == ROPE_LAYOUT_BNSD ? t_.seq : t_.heads;
        uint64_t len = segment - row % segment;
        if (end - row < len) {
            len = end - row;
        }
        if (t_.tileRows < len) {
            len = t_.tileRows;
        }
        return static_cast<uint32_t>(len);
    }

    // Mirrors RopeCosRow() in common/tiling_math.h (unit-tested there).
    __aicore__ inline uint64_t CosRow(uint64_t row) const
    {
        const uint64_t perBatch = static_cast<uint64_t>(t_.heads) * t_.seq;
        const uint64_t b = row / perBatch;
        const uint64_t s = t_.layout == ROPE_LAYOUT_BNSD ? row % t_.seq : (row / t_.heads) % t_.seq;
        return (t_.cosBatch == 1 ? 0 : b) * t_.seq + s;
    }

    // `rows` rows of one half (h elements each, row pitch D in GM) into UB rows of pitch halfAligned.
    __aicore__ inline void CopyHalfIn(const AscendC::LocalTensor<T>& dst, const AscendC::GlobalTensor<T>& src,
                                      uint64_t offset, uint32_t rows)
    {
        const uint32_t bytes = t_.halfDim * sizeof(T);
        AscendC::DataCopyExtParams params{static_cast<uint16_t>(rows), bytes, bytes /* GM gap: the other half */, 0, 0};
        AscendC::DataCopyPadExtParams<T> pad{false, 0, 0, 0};
        AscendC::DataCopyPad(dst, src[offset], params, pad);
    }

    __aicore__ inline void CopyIn(uint64_t row, uint32_t len)
    {
        const uint64_t d = t_.headDim;
        const uint32_t h = t_.halfDim;
        AscendC::LocalTensor<T> xLocal = inQueueX_.AllocTensor<T>();
        CopyHalfIn(xLocal, xGm_, row * d, len);
        CopyHalfIn(xLocal[region_], xGm_, row * d + h, len);
        inQueueX_.EnQue(xLocal);

        const uint64_t c0 = CosRow(row);
        const uint32_t cosRows = SharedCos() ? 1 : len;
        AscendC::LocalTensor<T> csLocal = inQueueCS_.AllocTensor<T>();
        CopyHalfIn(csLocal, cosGm_, c0 * d, cosRows);
        CopyHalfIn(csLocal[region_], cosGm_, c0 * d + h, cosRows);
        CopyHalfIn(csLocal[2 * region_], sinGm_, c0 * d, cosRows);
        CopyHalfIn(csLocal[3 * region_], sinGm_, c0 * d + h, cosRows);
        inQueueCS_.EnQue(csLocal);
    }

    // out1 = a1*b1 -/+ a2*b2 on `count` elements; `minus` selects the sign.
    __aicore__ inline void MulPair(const AscendC::LocalTensor<float>& out, const AscendC::LocalTensor<float>& a1,
                                   const AscendC::LocalTensor<float>& b1, const AscendC::LocalTensor<float>& a2,
                                   const AscendC::LocalTensor<float>& b2, const AscendC::LocalTensor<float>& tmp,
                                   bool minus, uint32_t count)
    {
        AscendC::Mul(out, a1, b1, count);
        AscendC::Mul(tmp, a2, b2, count);
        AscendC::PipeBarrier<PIPE_V>();
        if (minus) {
            AscendC::Sub(out, out, tmp, count);
        } else {
            AscendC::Add(out, out, tmp, count);
        }
        AscendC::PipeBarrier<PIPE_V>();
    }

    __aicore__ inline void Rotate(const AscendC::LocalTensor<float>& x1, const AscendC::LocalTensor<float>& x2,
                                  const AscendC::LocalTensor<float>& c1, const AscendC::LocalTensor<float>& c2,
                                  const AscendC::LocalTensor<float>& s1, const AscendC::LocalTensor<float>& s2,
                                  const AscendC::LocalTensor<float>& y1, const AscendC::LocalTensor<float>& y2,
                                  const AscendC::LocalTensor<float>& tmp, uint32_t len)
    {
        const uint32_t hA = t_.halfAligned;
        const bool bwd = t_.backward != 0;
        // BNSD: x rows and cos rows line up, one op over the tile; BSND: every row against cos row 0.
        const uint32_t loops = SharedCos() ? len : 1;
        const uint32_t count = SharedCos() ? hA : len * hA;
        for (uint32_t i = 0; i < loops; ++i) {
            const uint32_t off = i * hA;  // 32-byte aligned: hA * sizeof(float) is a multiple of 32
            if (!bwd) {
                MulPair(y1[off], x1[off], c1, x2[off], s1, tmp[off], true, count);
                MulPair(y2[off], x2[off], c2, x1[off], s2, tmp[off], false, count);
            } else {
                MulPair(y1[off], x1[off], c1, x2[off], s2, tmp[off], false, count);
                MulPair(y2[off], x2[off], c2, x1[off], s1, tmp[off], true, count);
            }
        }
    }

    __aicore__ inline void Compute(uint32_t len)
    {
        AscendC::LocalTensor<T> x = inQueueX_.DeQue<T>();
        AscendC::LocalTensor<T> cs = inQueueCS_.DeQue<T>();
        AscendC::LocalTensor<T> y = outQueueY_.AllocTensor<T>();
        AscendC::LocalTensor<float> f = f32Buf_.Get<float>();
        const uint32_t r = region_;
        const uint32_t n = len * t_.halfAligned;                              // x elements per half
        const uint32_t nc = (SharedCos() ? 1 : len) * t_.halfAligned;        // cos elements per half
        if constexpr (IsSame<T, float>::value) {
            Rotate(x, x[r], cs, cs[r], cs[2 * r], cs[3 * r], y, y[r], f, len);
        } else {
            // fp32 regions: x1 x2 c1 c2 s1 s2 y1 y2 tmp
            AscendC::Cast(f, x, AscendC::RoundMode::CAST_NONE, n);
            AscendC::Cast(f[r], x[r], AscendC::RoundMode::CAST_NONE, n);
            for (uint32_t k = 0; k < 4; ++k) {
                AscendC::Cast(f[(2 + k) * r], cs[k * r], AscendC::RoundMode::CAST_NONE, nc);
            }
            AscendC::PipeBarrier<PIPE_V>();
            Rotate(f, f[r], f[2 * r], f[3 * r], f[4 * r], f[5 * r], f[6 * r], f[7 * r], f[8 * r], len);
            AscendC::Cast(y, f[6 * r], AscendC::RoundMode::CAST_RINT, n);
            AscendC::Cast(y[r], f[7 * r], AscendC::RoundMode::CAST_RINT, n);
        }
        outQueueY_.EnQue(y);
        inQueueX_.FreeTensor(x);
        inQueueCS_.FreeTensor(cs);
    }

    __aicore__ inline void CopyOut(uint64_t row, uint32_t len)
    {
        AscendC::LocalTensor<T> y = outQueueY_.DeQue<T>();
        const uint64_t d = t_.headDim;
        const uint32_t bytes = t_.halfDim * sizeof(T);
        // UB rows are 32-byte padded (srcStride 0 blocks); GM rows skip the other half (dstStride bytes).
        AscendC::DataCopyExtParams params{static_cast<uint16_t>(len), bytes, 0, bytes, 0};
        AscendC::DataCopyPad(yGm_[row * d], y, params);
        AscendC::DataCopyPad(yGm_[row * d + t_.halfDim], y[region_], params);
        outQueueY_.FreeTensor(y);
    }

    AscendC::TPipe pipe_;
    AscendC::TQue<AscendC::TPosition::VECIN, BUFFER_NUM> inQueueX_;
    AscendC::TQue<AscendC::TPosition::VECIN, BUFFER_NUM> inQueueCS_;
    AscendC::TQue<AscendC::TPosition::VECOUT, BUFFER_NUM> outQueueY_;
    AscendC::TBuf<AscendC::TPosition::VECCALC> f32Buf_;
    AscendC::GlobalTensor<T> xGm_;
    AscendC::GlobalTensor<T> yGm_;
    AscendC::GlobalTensor<T> cosGm_;
    AscendC::GlobalTensor<T> sinGm_;
    RopeTilingData t_;
    uint64_t rowStart_ = 0;
    uint32_t rowCount_ = 0;
    uint32_t region_ = 0;
};

template <typename T>
__aicore__ inline void RunRope(GM_ADDR x, GM_ADDR cos, GM_ADDR sin, GM_ADDR y, GM_ADDR tilingGm)
{
    RopeTilingData tiling;
    LoadTiling(tilingGm, &tiling);
    KernelRope<T> op;
    op.Init(x, cos, sin, y, tiling);
    op.Process();
}

}  // namespace

// One entry point per dtype; x, cos, sin, y share it. Forward or backward is tiling.backward.
extern "C" __global__ __aicore__ void ascend_tools_rope_fp32(GM_ADDR x, GM_ADDR cos, GM_ADDR sin, GM_ADDR y,
                                                             GM_ADDR tiling)
{
    RunRope<float>(x, cos, sin, y, tiling);
}

extern "C" __global__ __aicore__ void ascend_tools_rope_fp16(GM_ADDR x, GM_ADDR cos, GM_ADDR sin, GM_ADDR y,
                                                             GM_ADDR tiling)
{
    RunRope<half>(x, cos, sin, y, tiling);
}

extern "C" __global__ __aicore__ void ascend_tools_rope_bf16(GM_ADDR x, GM_ADDR cos, GM_ADDR sin, GM_ADDR y,
                                                             GM_ADDR tiling)
{
    RunRope<bfloat16_t>(x, cos, sin, y, tiling);
}
