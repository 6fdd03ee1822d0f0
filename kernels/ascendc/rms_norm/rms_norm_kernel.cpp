// RMSNorm forward as an AscendC vector kernel (Atlas A2/A3, dav-c220).
//
// NEVER COMPILED OR RUN where it was written (no CANN there): see kernels/README.md for what was
// verified where. API followed: CANN 8.x AscendC basic APIs (TPipe, TQue, TBuf, GlobalTensor,
// LocalTensor, DataCopyPad, Cast, Mul, Muls, ReduceSum, Duplicate, PipeBarrier, SetFlag/WaitFlag),
// launched with ACLRT_LAUNCH_KERNEL from rms_norm_host.cpp.
//
// Semantics (= ascend_tools.ops reference, HF numerics), per row of x[rows, cols]:
//   rstd = 1 / sqrt(mean(float(x)^2) + eps)                         (fp32, written for the backward)
//   llama: y = T( float(T(float(x) * rstd)) * gamma )   gamma = float(T(weight + offset))
//   gemma: y = T( float(x) * rstd * gamma )             gamma = float(weight) + offset
// gamma arrives already prepared as fp32 (host side), so one kernel serves both casting modes.
//
// Work split (tiling in rms_norm_tiling.h, computed by common/tiling_math.h): rows over usedCores
// AI vector cores (block_dim); a row is one iteration; when the row fits the UB (numColTiles == 1) it
// is read once, else it is cut into tileCols tiles read twice (sum of squares, then normalise).
// In/out queues are double-buffered so the copy-in of row r+1 overlaps the compute of row r.
#include "kernel_operator.h"
#include "rms_norm_tiling.h"

namespace {

constexpr int32_t BUFFER_NUM = 2;
constexpr uint32_t BLOCK_BYTES = 32;

template <typename A, typename B>
struct IsSame {
    static constexpr bool value = false;
};
template <typename A>
struct IsSame<A, A> {
    static constexpr bool value = true;
};

__aicore__ inline void LoadTiling(GM_ADDR tilingGm, RmsNormTilingData* tiling)
{
    // Tiling lives in device memory as raw 4-byte words (the host copies the struct there).
    auto src = reinterpret_cast<__gm__ uint32_t*>(tilingGm);
    auto dst = reinterpret_cast<uint32_t*>(tiling);
    for (uint32_t i = 0; i < sizeof(RmsNormTilingData) / sizeof(uint32_t); ++i) {
        dst[i] = src[i];
    }
}

template <typename T>
class KernelRmsNorm {
public:
    __aicore__ inline KernelRmsNorm() {}

    __aicore__ inline void Init(GM_ADDR x, GM_ADDR gamma, GM_ADDR y, GM_ADDR rstd, const RmsNormTilingData& t)
    {
        tiling_ = t;
        const uint32_t block = AscendC::GetBlockIdx();
        rowCount_ = 0;
        if (block < t.usedCores) {
            rowCount_ = (block + 1 < t.usedCores) ? t.rowsPerCore : t.tailCoreRows;
        }
        const uint64_t rowStart = static_cast<uint64_t>(block) * t.rowsPerCore;
        const uint64_t cols = t.cols;
        xGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(x) + rowStart * cols, rowCount_ * cols);
        yGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(y) + rowStart * cols, rowCount_ * cols);
        gammaGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(gamma), cols);
        rstdGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(rstd) + rowStart, rowCount_);

        // Exactly the buffers counted by RmsNormUbBytes() in common/tiling_math.h.
        const uint32_t tile = t.tileCols;
        pipe_.InitBuffer(inQueueX_, BUFFER_NUM, tile * sizeof(T));
        pipe_.InitBuffer(outQueueY_, BUFFER_NUM, tile * sizeof(T));
        pipe_.InitBuffer(inQueueGamma_, 1, tile * sizeof(float));
        pipe_.InitBuffer(xF32Buf_, tile * sizeof(float));
        pipe_.InitBuffer(workBuf_, tile * sizeof(float));
        pipe_.InitBuffer(reduceTmpBuf_, t.reduceWorkElems * sizeof(float));
        pipe_.InitBuffer(reduceOutBuf_, BLOCK_BYTES);
        pipe_.InitBuffer(outQueueRstd_, BUFFER_NUM, BLOCK_BYTES);
    }

    __aicore__ inline void Process()
    {
        if (rowCount_ == 0) {
            return;
        }
        if (tiling_.numColTiles == 1) {
            ProcessWholeRows();
        } else {
            ProcessTiledRows();
        }
    }

private:
    __aicore__ inline uint32_t TileLen(uint32_t tile) const
    {
        return tile + 1 == tiling_.numColTiles ? tiling_.lastTileCols : tiling_.tileCols;
    }

    // Whole row in UB: gamma loaded once, x read once per row.
    __aicore__ inline void ProcessWholeRows()
    {
        const uint32_t n = tiling_.cols;
        CopyInGamma(0, n);
        AscendC::LocalTensor<float> gamma = inQueueGamma_.DeQue<float>();
        CopyInX(0, 0, n);
        for (uint32_t r = 0; r < rowCount_; ++r) {
            if (r + 1 < rowCount_) {
                CopyInX(r + 1, 0, n);  // prefetch into the second buffer while row r is computed
            }
            AscendC::LocalTensor<T> xLocal = inQueueX_.DeQue<T>();  // FIFO: row r
            AscendC::LocalTensor<float> xf = ToFloat(xLocal, n);
            const float rstd = Rstd(SumOfSquares(xf, n));
            WriteRstd(r, rstd);
            Normalise(xf, gamma, rstd, n);
            inQueueX_.FreeTensor(xLocal);
            CopyOutY(r, 0, n);
        }
        inQueueGamma_.FreeTensor(gamma);
    }

    // Row larger than the UB: pass 1 sums squares tile by tile, pass 2 re-reads x and gamma tiles.
    __aicore__ inline void ProcessTiledRows()
    {
        for (uint32_t r = 0; r < rowCount_; ++r) {
            float sum = 0.0f;
            for (uint32_t tile = 0; tile < tiling_.numColTiles; ++tile) {
                const uint32_t n = TileLen(tile);
                CopyInX(r, tile, n);
                AscendC::LocalTensor<T> xLocal = inQueueX_.DeQue<T>();
                AscendC::LocalTensor<float> xf = ToFloat(xLocal, n);
                sum += SumOfSquares(xf, n);
                inQueueX_.FreeTensor(xLocal);
            }
            const float rstd = Rstd(sum);
            WriteRstd(r, rstd);
            for (uint32_t tile = 0; tile < tiling_.numColTiles; ++tile) {
                const uint32_t n = TileLen(tile);
                CopyInGamma(tile, n);
                CopyInX(r, tile, n);
                AscendC::LocalTensor<float> gamma = inQueueGamma_.DeQue<float>();
                AscendC::LocalTensor<T> xLocal = inQueueX_.DeQue<T>();
                AscendC::LocalTensor<float> xf = ToFloat(xLocal, n);
                Normalise(xf, gamma, rstd, n);
                inQueueX_.FreeTensor(xLocal);
                inQueueGamma_.FreeTensor(gamma);
                CopyOutY(r, tile, n);
            }
        }
    }

    __aicore__ inline void CopyInX(uint32_t row, uint32_t tile, uint32_t n)
    {
        AscendC::LocalTensor<T> xLocal = inQueueX_.AllocTensor<T>();
        const uint64_t offset = static_cast<uint64_t>(row) * tiling_.cols + static_cast<uint64_t>(tile) * tiling_.tileCols;
        AscendC::DataCopyExtParams params{1, static_cast<uint32_t>(n * sizeof(T)), 0, 0, 0};
        AscendC::DataCopyPadExtParams<T> pad{false, 0, 0, 0};
        AscendC::DataCopyPad(xLocal, xGm_[offset], params, pad);
        inQueueX_.EnQue(xLocal);
    }

    __aicore__ inline void CopyInGamma(uint32_t tile, uint32_t n)
    {
        AscendC::LocalTensor<float> gLocal = inQueueGamma_.AllocTensor<float>();
        AscendC::DataCopyExtParams params{1, static_cast<uint32_t>(n * sizeof(float)), 0, 0, 0};
        AscendC::DataCopyPadExtParams<float> pad{false, 0, 0, 0};
        AscendC::DataCopyPad(gLocal, gammaGm_[static_cast<uint64_t>(tile) * tiling_.tileCols], params, pad);
        inQueueGamma_.EnQue(gLocal);
    }

    // fp32 view of the x tile: the tile itself for fp32 inputs, else an upcast copy (exact).
    __aicore__ inline AscendC::LocalTensor<float> ToFloat(AscendC::LocalTensor<T>& xLocal, uint32_t n)
    {
        if constexpr (IsSame<T, float>::value) {
            return xLocal;
        } else {
            AscendC::LocalTensor<float> xf = xF32Buf_.Get<float>();
            AscendC::Cast(xf, xLocal, AscendC::RoundMode::CAST_NONE, n);
            AscendC::PipeBarrier<PIPE_V>();
            return xf;
        }
    }

    __aicore__ inline float SumOfSquares(const AscendC::LocalTensor<float>& xf, uint32_t n)
    {
        AscendC::LocalTensor<float> sq = workBuf_.Get<float>();
        AscendC::LocalTensor<float> tmp = reduceTmpBuf_.Get<float>();
        AscendC::LocalTensor<float> out = reduceOutBuf_.Get<float>();
        AscendC::Mul(sq, xf, xf, n);
        AscendC::PipeBarrier<PIPE_V>();
        AscendC::ReduceSum<float>(out, sq, tmp, static_cast<int32_t>(n));
        // The scalar unit reads the vector result: wait for the vector pipe.
        event_t eventVS = static_cast<event_t>(GetTPipePtr()->FetchEventID(AscendC::HardEvent::V_S));
        AscendC::SetFlag<AscendC::HardEvent::V_S>(eventVS);
        AscendC::WaitFlag<AscendC::HardEvent::V_S>(eventVS);
        return out.GetValue(0);
    }

    __aicore__ inline float Rstd(float sumSquares) const
    {
        return 1.0f / sqrt(sumSquares * tiling_.avgFactor + tiling_.eps);
    }

    __aicore__ inline void WriteRstd(uint32_t row, float rstd)
    {
        AscendC::LocalTensor<float> rLocal = outQueueRstd_.AllocTensor<float>();
        AscendC::Duplicate(rLocal, rstd, BLOCK_BYTES / sizeof(float));  // vector write: queue syncs V -> MTE3
        outQueueRstd_.EnQue(rLocal);
        AscendC::LocalTensor<float> out = outQueueRstd_.DeQue<float>();
        AscendC::DataCopyExtParams params{1, static_cast<uint32_t>(sizeof(float)), 0, 0, 0};
        AscendC::DataCopyPad(rstdGm_[row], out, params);
        outQueueRstd_.FreeTensor(out);
    }

    // y tile = casting rule applied to xf * rstd and gamma; enqueued for CopyOutY.
    __aicore__ inline void Normalise(AscendC::LocalTensor<float>& xf, const AscendC::LocalTensor<float>& gamma,
                                     float rstd, uint32_t n)
    {
        AscendC::LocalTensor<float> xn = workBuf_.Get<float>();
        AscendC::LocalTensor<T> yLocal = outQueueY_.AllocTensor<T>();
        AscendC::Muls(xn, xf, rstd, n);
        AscendC::PipeBarrier<PIPE_V>();
        if constexpr (IsSame<T, float>::value) {
            AscendC::Mul(yLocal, xn, gamma, n);
        } else {
            if (tiling_.mode == 0) {
                // llama: round the normalised x to the input dtype first, then multiply by gamma.
                AscendC::Cast(yLocal, xn, AscendC::RoundMode::CAST_RINT, n);
                AscendC::PipeBarrier<PIPE_V>();
                AscendC::Cast(xn, yLocal, AscendC::RoundMode::CAST_NONE, n);
                AscendC::PipeBarrier<PIPE_V>();
            }
            AscendC::Mul(xn, xn, gamma, n);
            AscendC::PipeBarrier<PIPE_V>();
            AscendC::Cast(yLocal, xn, AscendC::RoundMode::CAST_RINT, n);
        }
        outQueueY_.EnQue(yLocal);
    }

    __aicore__ inline void CopyOutY(uint32_t row, uint32_t tile, uint32_t n)
    {
        AscendC::LocalTensor<T> yLocal = outQueueY_.DeQue<T>();
        const uint64_t offset = static_cast<uint64_t>(row) * tiling_.cols + static_cast<uint64_t>(tile) * tiling_.tileCols;
        AscendC::DataCopyExtParams params{1, static_cast<uint32_t>(n * sizeof(T)), 0, 0, 0};
        AscendC::DataCopyPad(yGm_[offset], yLocal, params);
        outQueueY_.FreeTensor(yLocal);
    }

    AscendC::TPipe pipe_;
    AscendC::TQue<AscendC::TPosition::VECIN, BUFFER_NUM> inQueueX_;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> inQueueGamma_;
    AscendC::TQue<AscendC::TPosition::VECOUT, BUFFER_NUM> outQueueY_;
    AscendC::TQue<AscendC::TPosition::VECOUT, BUFFER_NUM> outQueueRstd_;
    AscendC::TBuf<AscendC::TPosition::VECCALC> xF32Buf_;
    AscendC::TBuf<AscendC::TPosition::VECCALC> workBuf_;
    AscendC::TBuf<AscendC::TPosition::VECCALC> reduceTmpBuf_;
    AscendC::TBuf<AscendC::TPosition::VECCALC> reduceOutBuf_;
    AscendC::GlobalTensor<T> xGm_;
    AscendC::GlobalTensor<T> yGm_;
    AscendC::GlobalTensor<float> gammaGm_;
    AscendC::GlobalTensor<float> rstdGm_;
    RmsNormTilingData tiling_;
    uint32_t rowCount_ = 0;
};

template <typename T>
__aicore__ inline void RunRmsNorm(GM_ADDR x, GM_ADDR gamma, GM_ADDR y, GM_ADDR rstd, GM_ADDR tilingGm)
{
    RmsNormTilingData tiling;
    LoadTiling(tilingGm, &tiling);
    KernelRmsNorm<T> op;
    op.Init(x, gamma, y, rstd, tiling);
    op.Process();
}

}  // namespace

// One entry point per input dtype; gamma is always fp32, rstd is fp32 [rows].
extern "C" __global__ __aicore__ void ascend_tools_rms_norm_fp32(GM_ADDR x, GM_ADDR gamma, GM_ADDR y, GM_ADDR rstd,
                                                                 GM_ADDR tiling)
{
    RunRmsNorm<float>(x, gamma, y, rstd, tiling);
}

extern "C" __global__ __aicore__ void ascend_tools_rms_norm_fp16(GM_ADDR x, GM_ADDR gamma, GM_ADDR y, GM_ADDR rstd,
                                                                 GM_ADDR tiling)
{
    RunRmsNorm<half>(x, gamma, y, rstd, tiling);
}

extern "C" __global__ __aicore__ void ascend_tools_rms_norm_bf16(GM_ADDR x, GM_ADDR gamma, GM_ADDR y, GM_ADDR rstd,
                                                                 GM_ADDR tiling)
{
    RunRmsNorm<bfloat16_t>(x, gamma, y, rstd, tiling);
}
