// Unit test of kernels/ascendc/common/tiling_math.h, built and run with plain g++ (no CANN):
//   g++ -std=c++17 -Wall -Wextra -Werror -O1 -o /tmp/test_tiling kernels/tests/test_tiling.cpp && /tmp/test_tiling
// Besides the tiling invariants it replays the kernels' loop structure (cores -> tiles) on the CPU in
// fp32/fp64, so the decomposition the kernels rely on (row split, column tiles with partial sums,
// cos/sin segments, the backward transpose) is checked here, where the kernels cannot run.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../ascendc/common/tiling_math.h"

using namespace ascend_tools::tiling;

static int g_failures = 0;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++g_failures;                                                            \
        }                                                                            \
    } while (0)

static uint32_t CoreRows(uint32_t core, uint32_t used, uint32_t per, uint32_t tail) {
    return core + 1 < used ? per : tail;
}

static void TestSplitRows() {
    const uint64_t rows_list[] = {1, 2, 7, 40, 41, 48, 1000, 4096 * 8 + 3};
    const uint32_t cores_list[] = {0, 1, 2, 8, 20, 40, 48};
    for (uint64_t rows : rows_list) {
        for (uint32_t cores : cores_list) {
            RowSplit s = SplitRows(rows, cores);
            CHECK(s.usedCores >= 1);
            CHECK(s.usedCores <= (cores == 0 ? 1 : cores));
            CHECK(s.tailCoreRows >= 1 && s.tailCoreRows <= s.rowsPerCore);
            uint64_t covered = 0;
            for (uint32_t c = 0; c < s.usedCores; ++c) covered += CoreRows(c, s.usedCores, s.rowsPerCore, s.tailCoreRows);
            CHECK(covered == rows);
        }
    }
    RowSplit empty = SplitRows(0, 8);
    CHECK(empty.usedCores == 0);
}

static void TestHelpers() {
    CHECK(CeilDiv(10, 3) == 4);
    CHECK(AlignUp(123, 16) == 128);
    CHECK(AlignDown(123, 16) == 112);
    CHECK(ColAlign(2) == 16 && ColAlign(4) == 8);
    CHECK(ReduceSumWorkElems(1) == 8);
    CHECK(ReduceSumWorkElems(64) == 8);
    CHECK(ReduceSumWorkElems(65 * 64) == 72);
    CHECK(RopeHalfAligned(32, 2) == 32 && RopeHalfAligned(40, 2) == 48 && RopeHalfAligned(40, 4) == 40);
    CHECK(RopeHalfAligned(3, 4) == 8);
}

// The RMSNorm kernel's algorithm on the CPU: per core, per row, per column tile: partial sum of
// squares, then rstd, then the normalised output; compared with a direct fp64 computation.
static double RmsNormReplay(const RmsNormTilingData& t, const std::vector<float>& x, const std::vector<float>& g,
                            std::vector<float>& y, std::vector<float>& rstd) {
    std::vector<int> seen(t.rows, 0);
    for (uint32_t core = 0; core < t.usedCores; ++core) {
        uint64_t first = uint64_t(core) * t.rowsPerCore;
        uint32_t n = CoreRows(core, t.usedCores, t.rowsPerCore, t.tailCoreRows);
        for (uint32_t r = 0; r < n; ++r) {
            uint64_t row = first + r;
            seen[row]++;
            float sum = 0.0f;
            for (uint32_t tile = 0; tile < t.numColTiles; ++tile) {
                uint32_t len = tile + 1 == t.numColTiles ? t.lastTileCols : t.tileCols;
                CHECK(len >= 1 && len <= t.tileCols);
                float part = 0.0f;
                for (uint32_t c = 0; c < len; ++c) {
                    float v = x[row * t.cols + uint64_t(tile) * t.tileCols + c];
                    part += v * v;
                }
                sum += part;
            }
            float rs = 1.0f / std::sqrt(sum * t.avgFactor + t.eps);
            rstd[row] = rs;
            for (uint32_t tile = 0; tile < t.numColTiles; ++tile) {
                uint32_t len = tile + 1 == t.numColTiles ? t.lastTileCols : t.tileCols;
                for (uint32_t c = 0; c < len; ++c) {
                    uint64_t col = uint64_t(tile) * t.tileCols + c;
                    y[row * t.cols + col] = x[row * t.cols + col] * rs * g[col];
                }
            }
        }
    }
    for (int s : seen) CHECK(s == 1);
    double worst = 0.0;
    for (uint32_t row = 0; row < t.rows; ++row) {
        double ss = 0.0;
        for (uint32_t c = 0; c < t.cols; ++c) ss += double(x[row * t.cols + c]) * x[row * t.cols + c];
        double rs = 1.0 / std::sqrt(ss / t.cols + t.eps);
        for (uint32_t c = 0; c < t.cols; ++c) {
            double want = x[row * t.cols + c] * rs * g[c];
            worst = std::fmax(worst, std::fabs(want - y[row * t.cols + c]) / (1.0 + std::fabs(want)));
        }
    }
    return worst;
}

static void TestRmsNormTiling() {
    const uint64_t budget = kDefaultUbBytes - kUbReserveBytes;
    const uint64_t cols_list[] = {1, 8, 123, 128, 2048, 4096, 5120, 8192, 16384, 65536, 1000003};
    const uint32_t bytes_list[] = {2, 4};
    for (uint64_t cols : cols_list) {
        for (uint32_t bytes : bytes_list) {
            RmsNormTilingData t{};
            Status st = ComputeRmsNormTiling(37, cols, bytes, 40, kDefaultUbBytes, 1e-6f, 0, &t);
            CHECK(st == Status::kOk);
            if (st != Status::kOk) continue;
            CHECK(RmsNormUbBytes(t.tileCols, bytes) <= budget);
            CHECK(t.tileCols % ColAlign(bytes) == 0);
            CHECK((uint64_t(t.tileCols) * bytes) % kBlockBytes == 0);
            CHECK((uint64_t(t.tileCols) * 4) % kBlockBytes == 0);
            CHECK(t.lastTileCols >= 1 && t.lastTileCols <= t.tileCols);
            CHECK(uint64_t(t.numColTiles - 1) * t.tileCols + t.lastTileCols == cols);
            CHECK(t.reduceWorkElems >= ReduceSumWorkElems(t.tileCols));
            if (t.numColTiles > 1) CHECK(t.tileCols % kFp32PerRepeat == 0);
            CHECK(t.usedCores == 37 || t.usedCores <= 40);
        }
    }
    // Common LLM hidden sizes stay a single tile (one read of x) in 16-bit dtypes.
    RmsNormTilingData t{};
    CHECK(ComputeRmsNormTiling(4096, 4096, 2, 40, kDefaultUbBytes, 1e-6f, 0, &t) == Status::kOk);
    CHECK(t.numColTiles == 1 && t.tileCols == 4096 && t.lastTileCols == 4096);
    CHECK(ComputeRmsNormTiling(4096, 8192, 2, 40, kDefaultUbBytes, 1e-6f, 1, &t) == Status::kOk);
    CHECK(t.numColTiles == 1 && t.mode == 1);
    CHECK(ComputeRmsNormTiling(4096, 123, 2, 40, kDefaultUbBytes, 1e-6f, 0, &t) == Status::kOk);
    CHECK(t.numColTiles == 1 && t.tileCols == 128 && t.lastTileCols == 123);
    CHECK(std::fabs(t.avgFactor - 1.0f / 123.0f) < 1e-9f);
    // Errors.
    CHECK(ComputeRmsNormTiling(4, 16, 3, 40, kDefaultUbBytes, 1e-6f, 0, &t) == Status::kBadDtype);
    CHECK(ComputeRmsNormTiling(0, 16, 2, 40, kDefaultUbBytes, 1e-6f, 0, &t) == Status::kEmpty);
    CHECK(ComputeRmsNormTiling(4, 16, 2, 40, kDefaultUbBytes, 1e-6f, 2, &t) == Status::kBadShape);
    CHECK(ComputeRmsNormTiling(4, 16, 2, 40, 1024, 1e-6f, 0, &t) == Status::kTooLarge);
    CHECK(std::string(StatusMessage(Status::kBadDtype)).find("dtype") != std::string::npos);

    // Replay the kernel decomposition, single- and multi-tile (small UB forces a split).
    const uint64_t shapes[][2] = {{5, 123}, {37, 4096}, {3, 70000}};
    const uint64_t ubs[] = {kDefaultUbBytes, kUbReserveBytes + 8 * 1024};
    for (auto& shape : shapes) {
        for (uint64_t ub : ubs) {
            RmsNormTilingData tt{};
            CHECK(ComputeRmsNormTiling(shape[0], shape[1], 4, 8, ub, 1e-6f, 0, &tt) == Status::kOk);
            std::vector<float> x(shape[0] * shape[1]), g(shape[1]), y(x.size()), rstd(shape[0]);
            for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * double(i)) * 3.0f;
            for (size_t i = 0; i < g.size(); ++i) g[i] = 1.0f + 0.01f * float(i % 17);
            double err = RmsNormReplay(tt, x, g, y, rstd);
            CHECK(err < 1e-5);
            if (ub != kDefaultUbBytes && shape[1] > 1024) CHECK(tt.numColTiles > 1);
        }
    }
}

// The RoPE kernel's algorithm on the CPU: per core, per tile (never crossing a cos/sin segment),
// cos/sin rows as the kernel fetches them (BNSD: consecutive rows; BSND: one row for the tile).
static void RopeReplay(const RopeTilingData& t, const std::vector<double>& x, const std::vector<double>& cs,
                       const std::vector<double>& sn, std::vector<double>& y) {
    std::vector<int> seen(t.rows, 0);
    const uint32_t h = t.halfDim, d = t.headDim;
    for (uint32_t core = 0; core < t.usedCores; ++core) {
        uint64_t row = uint64_t(core) * t.rowsPerCore;
        uint64_t end = row + CoreRows(core, t.usedCores, t.rowsPerCore, t.tailCoreRows);
        while (row < end) {
            uint32_t len = RopeTileLen(t, row, end);
            CHECK(len >= 1 && len <= t.tileRows);
            uint64_t cos0 = RopeCosRow(t, row);
            bool shared = t.layout == ROPE_LAYOUT_BSND;
            for (uint32_t i = 0; i < len; ++i) {
                uint64_t r = row + i;
                seen[r]++;
                uint64_t c = shared ? cos0 : cos0 + i;
                CHECK(c == RopeCosRow(t, r));  // the tile's cos rows are what the row needs
                for (uint32_t k = 0; k < h; ++k) {
                    double x1 = x[r * d + k], x2 = x[r * d + h + k];
                    double c1 = cs[c * d + k], c2 = cs[c * d + h + k];
                    double s1 = sn[c * d + k], s2 = sn[c * d + h + k];
                    if (!t.backward) {
                        y[r * d + k] = x1 * c1 - x2 * s1;
                        y[r * d + h + k] = x2 * c2 + x1 * s2;
                    } else {
                        y[r * d + k] = x1 * c1 + x2 * s2;
                        y[r * d + h + k] = x2 * c2 - x1 * s1;
                    }
                }
            }
            row += len;
        }
    }
    for (int s : seen) CHECK(s == 1);
}

static void TestRope() {
    struct Case { uint64_t b, n, s, d, bc; uint32_t layout; uint32_t bytes; uint32_t cores; };
    const Case cases[] = {
        {2, 4, 7, 64, 1, ROPE_LAYOUT_BNSD, 2, 8},   {2, 4, 7, 64, 2, ROPE_LAYOUT_BSND, 2, 8},
        {1, 8, 1, 128, 1, ROPE_LAYOUT_BNSD, 4, 40}, {3, 2, 33, 80, 3, ROPE_LAYOUT_BSND, 4, 5},
        {2, 3, 5, 10, 1, ROPE_LAYOUT_BNSD, 2, 3},   {1, 1, 1, 2, 1, ROPE_LAYOUT_BSND, 4, 40},
    };
    const uint64_t budget = kDefaultUbBytes - kUbReserveBytes;
    for (const Case& cs : cases) {
        for (int bwd = 0; bwd < 2; ++bwd) {
            RopeTilingData t{};
            CHECK(ComputeRopeTiling(cs.b, cs.n, cs.s, cs.d, cs.bc, cs.layout, cs.bytes, cs.cores, kDefaultUbBytes,
                                    bwd != 0, &t) == Status::kOk);
            CHECK(t.rows == cs.b * cs.n * cs.s);
            CHECK(t.tileRows >= 1 && t.tileRows <= kMaxTileRows);
            CHECK(uint64_t(t.tileRows) * RopeUbBytesPerRow(t.halfAligned, cs.bytes) <= budget);
            CHECK((uint64_t(t.halfAligned) * cs.bytes) % kBlockBytes == 0);
            CHECK((uint64_t(t.halfAligned) * 4) % kBlockBytes == 0);
            CHECK(t.halfAligned >= t.halfDim);
            CHECK(t.backward == uint32_t(bwd));
        }
        // Forward then backward is the transpose: <rope(x), g> == <x, rope_bwd(g)>.
        RopeTilingData f{}, b{};
        CHECK(ComputeRopeTiling(cs.b, cs.n, cs.s, cs.d, cs.bc, cs.layout, cs.bytes, cs.cores, kDefaultUbBytes, false,
                                &f) == Status::kOk);
        CHECK(ComputeRopeTiling(cs.b, cs.n, cs.s, cs.d, cs.bc, cs.layout, cs.bytes, cs.cores, kDefaultUbBytes, true,
                                &b) == Status::kOk);
        size_t nx = size_t(f.rows) * cs.d, nc = size_t(cs.bc * cs.s * cs.d);
        std::vector<double> x(nx), g(nx), c(nc), s(nc), y(nx), gx(nx);
        for (size_t i = 0; i < nx; ++i) { x[i] = std::sin(0.11 * double(i) + 0.3); g[i] = std::cos(0.07 * double(i)); }
        for (size_t i = 0; i < nc; ++i) { c[i] = std::cos(0.05 * double(i)); s[i] = std::sin(0.05 * double(i)); }
        RopeReplay(f, x, c, s, y);
        RopeReplay(b, g, c, s, gx);
        double lhs = 0.0, rhs = 0.0;
        for (size_t i = 0; i < nx; ++i) { lhs += y[i] * g[i]; rhs += x[i] * gx[i]; }
        CHECK(std::fabs(lhs - rhs) <= 1e-9 * (1.0 + std::fabs(lhs)));
        // Forward against the textbook formula with the broadcast done explicitly.
        for (uint64_t bi = 0; bi < cs.b; ++bi)
            for (uint64_t ni = 0; ni < cs.n; ++ni)
                for (uint64_t si = 0; si < cs.s; ++si) {
                    uint64_t r = cs.layout == ROPE_LAYOUT_BNSD ? (bi * cs.n + ni) * cs.s + si : (bi * cs.s + si) * cs.n + ni;
                    uint64_t cr = (cs.bc == 1 ? 0 : bi) * cs.s + si;
                    uint64_t h = cs.d / 2;
                    for (uint64_t k = 0; k < cs.d; ++k) {
                        double rot = k < h ? -x[r * cs.d + k + h] : x[r * cs.d + k - h];
                        double want = x[r * cs.d + k] * c[cr * cs.d + k] + rot * s[cr * cs.d + k];
                        CHECK(std::fabs(want - y[r * cs.d + k]) < 1e-12);
                    }
                }
    }
    RopeTilingData t{};
    CHECK(ComputeRopeTiling(1, 1, 1, 3, 1, ROPE_LAYOUT_BNSD, 2, 8, kDefaultUbBytes, false, &t) == Status::kBadShape);
    CHECK(ComputeRopeTiling(2, 1, 1, 4, 3, ROPE_LAYOUT_BNSD, 2, 8, kDefaultUbBytes, false, &t) == Status::kBadShape);
    CHECK(ComputeRopeTiling(1, 1, 1, 4, 1, 7, 2, 8, kDefaultUbBytes, false, &t) == Status::kBadShape);
    CHECK(ComputeRopeTiling(1, 1, 1, 4, 1, ROPE_LAYOUT_BNSD, 8, 8, kDefaultUbBytes, false, &t) == Status::kBadDtype);
    CHECK(ComputeRopeTiling(0, 1, 1, 4, 1, ROPE_LAYOUT_BNSD, 2, 8, kDefaultUbBytes, false, &t) == Status::kEmpty);
    CHECK(ComputeRopeTiling(1, 1, 1, 60000, 1, ROPE_LAYOUT_BNSD, 4, 8, kDefaultUbBytes, false, &t) == Status::kTooLarge);
}

int main() {
    TestHelpers();
    TestSplitRows();
    TestRmsNormTiling();
    TestRope();
    if (g_failures) {
        std::fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    std::printf("tiling tests passed\n");
    return 0;
}
