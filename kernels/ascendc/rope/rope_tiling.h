// RoPE (rotate_half) tiling data: computed on the host (common/tiling_math.h), copied to device
// memory as raw bytes and read word by word by the kernel (rope_kernel.cpp). 4-byte fields only.
#ifndef ASCEND_TOOLS_ROPE_TILING_H
#define ASCEND_TOOLS_ROPE_TILING_H
#include <cstdint>

// Layout of x: rows are the flattened leading dims, each row is one head vector of D elements.
//   ROPE_LAYOUT_BNSD: x[B, N, S, D], cos/sin[Bc, S, D] broadcast over N  (HF unsqueeze_dim=1)
//   ROPE_LAYOUT_BSND: x[B, S, N, D], cos/sin[Bc, S, D] broadcast over N  (HF unsqueeze_dim=2)
// Bc is 1 (cos shared by the batch) or B.
enum : uint32_t { ROPE_LAYOUT_BNSD = 0, ROPE_LAYOUT_BSND = 1 };

struct RopeTilingData {
    uint32_t rows;          // B * N * S
    uint32_t headDim;       // D (even)
    uint32_t halfDim;       // D / 2
    uint32_t halfAligned;   // halfDim rounded up to the 32-byte block of the input dtype (UB row stride)
    uint32_t layout;        // ROPE_LAYOUT_*
    uint32_t batch;         // B
    uint32_t heads;         // N
    uint32_t seq;           // S
    uint32_t cosBatch;      // Bc: 1 or B
    uint32_t usedCores;
    uint32_t rowsPerCore;
    uint32_t tailCoreRows;
    uint32_t tileRows;      // rows per UB tile (a tile never crosses a cos/sin segment, see the kernel)
    uint32_t backward;      // 0: y = x*cos + rotate_half(x)*sin; 1: the transpose (gradient wrt x)
};

static_assert(sizeof(RopeTilingData) == 14 * 4, "RopeTilingData must stay 4-byte words only");

#endif  // ASCEND_TOOLS_ROPE_TILING_H
