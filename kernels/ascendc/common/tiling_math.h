// Host-side tiling math for the AscendC kernels: how rows spread over AI cores, how a row is cut into
// Unified-Buffer (UB) tiles, and how big every UB buffer is. Pure C++17, no CANN header, so it is
// compiled and unit-tested with g++ on any machine (kernels/tests/test_tiling.cpp); the host bindings
// (rms_norm_host.cpp, rope_host.cpp) call it and the kernels allocate exactly the buffers counted in
// RmsNormUbBytes / RopeUbBytesPerRow.
#ifndef ASCEND_TOOLS_TILING_MATH_H
#define ASCEND_TOOLS_TILING_MATH_H
#include <cstdint>

#include "../rms_norm/rms_norm_tiling.h"
#include "../rope/rope_tiling.h"

namespace ascend_tools {
namespace tiling {

constexpr uint32_t kBlockBytes = 32;                  // UB data block: DataCopy unit, vector operand alignment
constexpr uint32_t kFp32PerRepeat = 256 / 4;          // fp32 elements per vector repeat (256 bytes)
constexpr uint64_t kDefaultUbBytes = 192 * 1024;      // Atlas A2/A3 AI Vector core UB
constexpr uint64_t kUbReserveBytes = 16 * 1024;       // left free (TPipe bookkeeping, safety margin)
constexpr uint32_t kMaxTileRows = 1024;               // DataCopyPad blockCount is uint16 (<= 4095)
constexpr uint32_t kBufferNum = 2;                    // double buffering of the in/out queues
constexpr uint32_t kRmsNormMinTileCols = kFp32PerRepeat;

enum class Status : uint32_t { kOk = 0, kEmpty, kBadDtype, kBadShape, kTooLarge };

inline const char* StatusMessage(Status s) {
    switch (s) {
        case Status::kOk: return "ok";
        case Status::kEmpty: return "empty input (nothing to launch)";
        case Status::kBadDtype: return "dtype size must be 2 (float16/bfloat16) or 4 (float32)";
        case Status::kBadShape: return "unsupported shape";
        case Status::kTooLarge: return "shape too large for the unified buffer or 32-bit tiling fields";
    }
    return "unknown";
}

constexpr uint64_t CeilDiv(uint64_t a, uint64_t b) { return b == 0 ? 0 : (a + b - 1) / b; }
constexpr uint64_t AlignUp(uint64_t a, uint64_t b) { return CeilDiv(a, b) * b; }
constexpr uint64_t AlignDown(uint64_t a, uint64_t b) { return b == 0 ? 0 : a / b * b; }
constexpr uint64_t Min(uint64_t a, uint64_t b) { return a < b ? a : b; }

// Elements of a dtype of `bytes` that make one 32-byte block.
constexpr uint32_t ElemsPerBlock(uint32_t bytes) { return bytes == 0 ? 0 : kBlockBytes / bytes; }

// Element count granularity such that both a buffer of the input dtype and its fp32 copy are whole
// 32-byte blocks: 16 for float16/bfloat16, 8 for float32.
constexpr uint32_t ColAlign(uint32_t dtypeBytes) {
    return ElemsPerBlock(dtypeBytes) > ElemsPerBlock(4) ? ElemsPerBlock(dtypeBytes) : ElemsPerBlock(4);
}

inline bool DtypeOk(uint32_t bytes) { return bytes == 2 || bytes == 4; }

struct RowSplit {
    uint32_t usedCores;
    uint32_t rowsPerCore;
    uint32_t tailCoreRows;
};

// Rows spread over at most coreNum cores: cores 0 .. used-2 take rowsPerCore, the last takes
// tailCoreRows (1 .. rowsPerCore). No core is left with zero rows.
inline RowSplit SplitRows(uint64_t rows, uint32_t coreNum) {
    if (rows == 0) return {0, 0, 0};
    if (coreNum == 0) coreNum = 1;
    uint64_t per = CeilDiv(rows, coreNum);
    uint64_t used = CeilDiv(rows, per);
    uint64_t tail = rows - (used - 1) * per;
    return {static_cast<uint32_t>(used), static_cast<uint32_t>(per), static_cast<uint32_t>(tail)};
}

// Minimum fp32 shared tmp buffer of AscendC::ReduceSum(dst, src, tmp, count) (documented formula:
// one partial per 256-byte repeat, rounded up to a 32-byte block).
constexpr uint32_t ReduceSumWorkElems(uint32_t count) {
    return static_cast<uint32_t>(AlignUp(CeilDiv(count, kFp32PerRepeat), ElemsPerBlock(4))) < ElemsPerBlock(4)
               ? ElemsPerBlock(4)
               : static_cast<uint32_t>(AlignUp(CeilDiv(count, kFp32PerRepeat), ElemsPerBlock(4)));
}

// UB bytes the RMSNorm kernel allocates for a tile of `tileCols` elements of a `dtypeBytes` input:
//   x in-queue (2 buffers, T), y out-queue (2 buffers, T), gamma (fp32), x as fp32, fp32 scratch,
//   ReduceSum tmp + its 1-block result, rstd out-queue (2 buffers of one block).
inline uint64_t RmsNormUbBytes(uint32_t tileCols, uint32_t dtypeBytes) {
    uint64_t c = tileCols;
    return kBufferNum * c * dtypeBytes + kBufferNum * c * dtypeBytes + c * 4 + c * 4 + c * 4 +
           uint64_t(ReduceSumWorkElems(tileCols)) * 4 + kBlockBytes + kBufferNum * kBlockBytes;
}

// mode: 0 = llama casting, 1 = gemma casting.
inline Status ComputeRmsNormTiling(uint64_t rows, uint64_t cols, uint32_t dtypeBytes, uint32_t coreNum,
                                   uint64_t ubBytes, float eps, uint32_t mode, RmsNormTilingData* out) {
    if (!DtypeOk(dtypeBytes)) return Status::kBadDtype;
    if (mode > 1) return Status::kBadShape;
    if (rows == 0 || cols == 0) return Status::kEmpty;
    if (rows > 0xFFFFFFFFull || cols > 0x7FFFFFFFull) return Status::kTooLarge;
    if (ubBytes <= kUbReserveBytes) return Status::kTooLarge;
    const uint64_t budget = ubBytes - kUbReserveBytes;
    const uint32_t align = ColAlign(dtypeBytes);

    uint64_t tile = AlignUp(cols, align);
    uint32_t numTiles = 1;
    if (tile > 0xFFFFFFFFull || RmsNormUbBytes(static_cast<uint32_t>(tile), dtypeBytes) > budget) {
        // Split the row: the largest multiple of one fp32 repeat that fits.
        const uint64_t perElem = 4ull * dtypeBytes + 12;
        tile = AlignDown(budget / perElem, kRmsNormMinTileCols);
        while (tile >= kRmsNormMinTileCols && RmsNormUbBytes(static_cast<uint32_t>(tile), dtypeBytes) > budget) {
            tile -= kRmsNormMinTileCols;
        }
        if (tile < kRmsNormMinTileCols) return Status::kTooLarge;
        numTiles = static_cast<uint32_t>(CeilDiv(cols, tile));
    }
    RowSplit split = SplitRows(rows, coreNum);
    out->rows = static_cast<uint32_t>(rows);
    out->cols = static_cast<uint32_t>(cols);
    out->usedCores = split.usedCores;
    out->rowsPerCore = split.rowsPerCore;
    out->tailCoreRows = split.tailCoreRows;
    out->tileCols = static_cast<uint32_t>(tile);
    out->numColTiles = numTiles;
    out->lastTileCols = static_cast<uint32_t>(cols - uint64_t(numTiles - 1) * tile);
    out->reduceWorkElems = ReduceSumWorkElems(static_cast<uint32_t>(tile));
    out->mode = mode;
    out->eps = eps;
    out->avgFactor = 1.0f / static_cast<float>(cols);
    return Status::kOk;
}

// Row stride (elements) in UB of one half head-vector of a `dtypeBytes` input: DataCopyPad puts
// every copied block at a 32-byte boundary.
constexpr uint32_t RopeHalfAligned(uint32_t halfDim, uint32_t dtypeBytes) {
    return static_cast<uint32_t>(AlignUp(halfDim, ElemsPerBlock(dtypeBytes)));
}

// UB bytes per row of a tile: x in-queue (x1|x2), cos/sin in-queue (c1|c2|s1|s2), y out-queue (y1|y2),
// each double-buffered in the input dtype; fp32 work: for 2-byte inputs x, cos, sin as fp32 (6 halves),
// y as fp32 (2 halves) and one scratch half; for fp32 inputs only the scratch half.
inline uint64_t RopeUbBytesPerRow(uint32_t halfAligned, uint32_t dtypeBytes) {
    uint64_t h = halfAligned;
    uint64_t queues = kBufferNum * (2 + 4 + 2) * h * dtypeBytes;
    uint64_t fp32 = (dtypeBytes == 4 ? 1 : 9) * h * 4;
    return queues + fp32;
}

inline Status ComputeRopeTiling(uint64_t batch, uint64_t heads, uint64_t seq, uint64_t headDim, uint64_t cosBatch,
                                uint32_t layout, uint32_t dtypeBytes, uint32_t coreNum, uint64_t ubBytes,
                                bool backward, RopeTilingData* out) {
    if (!DtypeOk(dtypeBytes)) return Status::kBadDtype;
    if (layout != ROPE_LAYOUT_BNSD && layout != ROPE_LAYOUT_BSND) return Status::kBadShape;
    if (batch == 0 || heads == 0 || seq == 0 || headDim == 0) return Status::kEmpty;
    if (headDim % 2 != 0) return Status::kBadShape;
    if (cosBatch != 1 && cosBatch != batch) return Status::kBadShape;
    const uint64_t rows = batch * heads * seq;
    if (rows > 0xFFFFFFFFull || headDim > 0xFFFFull) return Status::kTooLarge;
    if (ubBytes <= kUbReserveBytes) return Status::kTooLarge;
    const uint64_t budget = ubBytes - kUbReserveBytes;
    const uint32_t half = static_cast<uint32_t>(headDim / 2);
    const uint32_t halfAligned = RopeHalfAligned(half, dtypeBytes);
    const uint64_t perRow = RopeUbBytesPerRow(halfAligned, dtypeBytes);
    if (perRow > budget) return Status::kTooLarge;

    RowSplit split = SplitRows(rows, coreNum);
    const uint64_t segment = layout == ROPE_LAYOUT_BNSD ? seq : heads;  // rows sharing one cos/sin run
    uint64_t tileRows = Min(Min(budget / perRow, kMaxTileRows), Min(segment, split.rowsPerCore));
    out->rows = static_cast<uint32_t>(rows);
    out->headDim = static_cast<uint32_t>(headDim);
    out->halfDim = half;
    out->halfAligned = halfAligned;
    out->layout = layout;
    out->batch = static_cast<uint32_t>(batch);
    out->heads = static_cast<uint32_t>(heads);
    out->seq = static_cast<uint32_t>(seq);
    out->cosBatch = static_cast<uint32_t>(cosBatch);
    out->usedCores = split.usedCores;
    out->rowsPerCore = split.rowsPerCore;
    out->tailCoreRows = split.tailCoreRows;
    out->tileRows = static_cast<uint32_t>(tileRows);
    out->backward = backward ? 1u : 0u;
    return Status::kOk;
}

// Index of the cos/sin row (in the [Bc*S, D] flattened cos) used by x row `row`: shared by the host
// test and mirrored in rope_kernel.cpp (CosRow).
inline uint64_t RopeCosRow(const RopeTilingData& t, uint64_t row) {
    uint64_t b, s;
    if (t.layout == ROPE_LAYOUT_BNSD) {  // row = (b * N + n) * S + s
        s = row % t.seq;
        b = row / (uint64_t(t.heads) * t.seq);
    } else {  // row = (b * S + s) * N + n
        s = (row / t.heads) % t.seq;
        b = row / (uint64_t(t.heads) * t.seq);
    }
    return (t.cosBatch == 1 ? 0 : b) * t.seq + s;
}

// Rows of the tile that starts at `row` on a core whose rows end at `end` (exclusive): bounded by
// tileRows and by the cos/sin segment (BNSD: the rest of the S run of one (b, n), all with
// consecutive cos rows; BSND: the rest of the N heads of one (b, s), all with the same cos row).
inline uint32_t RopeTileLen(const RopeTilingData& t, uint64_t row, uint64_t end) {
    uint64_t segment = t.layout == ROPE_LAYOUT_BNSD ? t.seq : t.heads;
    uint64_t left_in_segment = segment - row % segment;
    return static_cast<uint32_t>(Min(Min(t.tileRows, end - row), left_in_segment));
}

}  // namespace tiling
}  // namespace ascend_tools

#endif  // ASCEND_TOOLS_TILING_MATH_H
