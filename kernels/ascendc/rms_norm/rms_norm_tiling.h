// RMSNorm tiling data: computed on the host (common/tiling_math.h), copied to device memory as raw
// bytes and read word by word by the kernel (rms_norm_kernel.cpp). Plain 4-byte fields only, so the
// host (g++) and the AscendC compiler agree on the layout; no CANN header needed.
#ifndef ASCEND_TOOLS_RMS_NORM_TILING_H
#define ASCEND_TOOLS_RMS_NORM_TILING_H
#include <cstdint>

struct RmsNormTilingData {
    uint32_t rows;          // product of all dims but the last
    uint32_t cols;          // hidden size (the normalised dim)
    uint32_t usedCores;     // block_dim of the launch
    uint32_t rowsPerCore;   // rows of cores 0 .. usedCores-2
    uint32_t tailCoreRows;  // rows of the last used core (1 .. rowsPerCore)
    uint32_t tileCols;      // elements per UB tile; a multiple of the 32-byte block for every buffer dtype
    uint32_t numColTiles;   // ceil(cols / tileCols); 1 = the whole row stays in UB (single read of x)
    uint32_t lastTileCols;  // cols - (numColTiles - 1) * tileCols
    uint32_t reduceWorkElems;  // fp32 elements of the ReduceSum shared tmp buffer for tileCols
    uint32_t mode;          // 0 = llama casting, 1 = gemma casting
    float eps;
    float avgFactor;        // 1 / cols
};

static_assert(sizeof(RmsNormTilingData) == 12 * 4, "RmsNormTilingData must stay 4-byte words only");

#endif  // ASCEND_TOOLS_RMS_NORM_TILING_H
