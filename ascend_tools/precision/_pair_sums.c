/* One pass over a pair of flat CPU arrays (target t, reference r; float32, bfloat16 bits or float16): every
   sum, count and maximum of metrics._pass, in float32 arithmetic.

   Why compiled: metrics._pass makes ~30 NumPy calls per block of 65536 elements, each one more trip through
   memory; compare spends most of its CPU there. Here each element is loaded once.

   pair_sums(t_address, t_kind, r_address, r_kind, n, emin, emax, floor)
     -> (above, differ, within_1e3, within_5e3,
         max_abs, max_r, max_t, max_rel, max_ulp, max_scaled,
         dd, tt, tr, ds, sum_rel, sum_ulp)
   and sum_squares(address, kind, n) (the reference's, for the scaled ULP error's floor, first), and
   max_ulp(t_address, t_kind, r_address, r_kind, n, low, high) (metrics.max_ulp_ratio's one metric) and
   max_ulp_f64(t_address, t_kind, r_address, n, low, high) (the same in float64 against a float64 reference,
   t of kind 1 = float64 or any of the others: a float64 replay's screen, shadow's float64 copies),
   or None where the CPU lacks AVX2, off x86-64 (an Arm host) and when compiled with -DASCEND_DOCTOR_NO_SIMD
   (metrics.py then runs its NumPy pass, the reference for this one). kind:
   0 float32, 2 bfloat16, 3 float16 (as _moments.c). With emin > emax no ULP metric is computed (a target
   dtype without a known format). Each step is the float32 operation metrics._pass makes (IEEE-rounded the
   same way); its sums are float32 within blocks of 256 elements and float64 across blocks (NumPy's are
   pairwise within 65536), so sums agree to float32 rounding and counts and maxima exactly. NaN or Inf
   make some sum non-finite, which metrics.py handles as it does for its own pass. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 256

typedef struct {
    long long above, differ, within_1e3, within_5e3;
    float max_abs, max_r, max_t, max_rel, max_ulp, max_scaled;
    double dd, tt, tr, ds, sum_rel, sum_ulp;
} sums_t;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(ASCEND_DOCTOR_NO_SIMD)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,f16c")))

/* 8 float32 lanes of element i of an array of the given kind */
AVX2 static inline __m256 load8(const void *base, int kind, Py_ssize_t i) {
    if (kind == 0) return _mm256_loadu_ps((const float *)base + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + i));
    if (kind == 3) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2 static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

AVX2 static inline double hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return (double)_mm_cvtss_f32(s);
}

AVX2 static inline long long hcount8(__m256i v) {
    int32_t c[8];
    _mm256_storeu_si256((__m256i *)c, v);
    long long total = 0;
    for (int j = 0; j < 8; j++) total -= c[j]; /* comparison masks are -1 */
    return total;
}

/* whole vectors only; the caller pads the tail */
AVX2 static void pass(const void *t, int t_kind, const void *r, int r_kind, Py_ssize_t n, int ulp, float low,
                      float high, float floor, sums_t *s) {
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    const __m256 rel_floor = _mm256_set1_ps(0x1p-52f), c1 = _mm256_set1_ps(1e-3f), c2 = _mm256_set1_ps(5e-3f);
    const __m256 lo = _mm256_set1_ps(low), hi = _mm256_set1_ps(high), fl = _mm256_set1_ps(floor);
    const __m256 exp_bits = _mm256_castsi256_ps(_mm256_set1_epi32(0x7F800000));
    __m256 max_abs = zero, max_r = zero, max_t = zero, max_rel = zero, max_ulp = zero, max_scaled = zero;
    for (Py_ssize_t i0 = 0; i0 < n; i0 += BLOCK) {
        const Py_ssize_t end = i0 + BLOCK < n ? i0 + BLOCK : n;
        __m256i above = _mm256_setzero_si256(), differ = above, w1 = above, w5 = above;
        __m256 dd = zero, tt = zero, tr = zero, ds = zero, sum_rel = zero, sum_ulp = zero;
        for (Py_ssize_t i = i0; i < end; i += 8) {
            const __m256 tv = load8(t, t_kind, i), rv = load8(r, r_kind, i);
            const __m256 d = _mm256_sub_ps(tv, rv);
            const __m256 gt = _mm256_cmp_ps(d, zero, _CMP_GT_OQ), lt = _mm256_cmp_ps(d, zero, _CMP_LT_OQ);
            above = _mm256_add_epi32(above, _mm256_castps_si256(gt));
            differ = _mm256_add_epi32(differ, _mm256_castps_si256(_mm256_or_ps(gt, lt)));
            ds = _mm256_add_ps(ds, _mm256_mul_ps(d, _mm256_add_ps(tv, rv)));
            tr = _mm256_add_ps(tr, _mm256_mul_ps(tv, rv));
            tt = _mm256_add_ps(tt, _mm256_mul_ps(tv, tv));
            max_t = _mm256_max_ps(_mm256_andnot_ps(sign, tv), max_t);
            const __m256 ad = _mm256_andnot_ps(sign, d), ar = _mm256_andnot_ps(sign, rv);
            max_abs = _mm256_max_ps(ad, max_abs);
            dd = _mm256_add_ps(dd, _mm256_mul_ps(ad, ad));
            max_r = _mm256_max_ps(ar, max_r);
            const __m256 rel = _mm256_div_ps(ad, _mm256_max_ps(ar, rel_floor));
            max_rel = _mm256_max_ps(rel, max_rel);
            sum_rel = _mm256_add_ps(sum_rel, rel);
            w1 = _mm256_add_epi32(w1, _mm256_castps_si256(_mm256_cmp_ps(rel, c1, _CMP_LE_OQ)));
            w5 = _mm256_add_epi32(w5, _mm256_castps_si256(_mm256_cmp_ps(rel, c2, _CMP_LE_OQ)));
            if (ulp) {
                const __m256 p2 = _mm256_min_ps(_mm256_max_ps(_mm256_and_ps(rv, exp_bits), lo), hi);
                const __m256 q = _mm256_div_ps(ad, p2);
                max_ulp = _mm256_max_ps(q, max_ulp);
                sum_ulp = _mm256_add_ps(sum_ulp, q);
                max_scaled = _mm256_max_ps(_mm256_div_ps(ad, _mm256_max_ps(p2, fl)), max_scaled);
            }
        }
        s->above += hcount8(above);
        s->differ += hcount8(differ);
        s->within_1e3 += hcount8(w1);
        s->within_5e3 += hcount8(w5);
        s->dd += hsum8(dd);
        s->tt += hsum8(tt);
        s->tr += hsum8(tr);
        s->ds += hsum8(ds);
        s->sum_rel += hsum8(sum_rel);
        s->sum_ulp += hsum8(sum_ulp);
    }
    s->max_abs = hmax8(max_abs);
    s->max_r = hmax8(max_r);
    s->max_t = hmax8(max_t);
    s->max_rel = hmax8(max_rel);
    s->max_ulp = hmax8(max_ulp);
    s->max_scaled = hmax8(max_scaled);
}

/* max |t - r| / clamp(2**floor(log2|r|), low, high) over whole vectors: NaN where an element of t or r is NaN
   or Inf (x - x is NaN exactly there), else the maximum, +Inf where a ratio overflowed float32 (finite
   elements: float64 then measures it) */
AVX2 static float worst_ulp(const void *t, int t_kind, const void *r, int r_kind, Py_ssize_t n, float low,
                            float high) {
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    const __m256 lo = _mm256_set1_ps(low), hi = _mm256_set1_ps(high);
    const __m256 exp_bits = _mm256_castsi256_ps(_mm256_set1_epi32(0x7F800000));
    __m256 worst = zero, bad = zero;
    for (Py_ssize_t i = 0; i < n; i += 8) {
        const __m256 tv = load8(t, t_kind, i), rv = load8(r, r_kind, i);
        bad = _mm256_add_ps(bad, _mm256_add_ps(_mm256_sub_ps(tv, tv), _mm256_sub_ps(rv, rv)));
        const __m256 ad = _mm256_andnot_ps(sign, _mm256_sub_ps(tv, rv));
        const __m256 q = _mm256_div_ps(ad, _mm256_min_ps(_mm256_max_ps(_mm256_and_ps(rv, exp_bits), lo), hi));
        worst = _mm256_max_ps(q, worst);
    }
    return hsum8(bad) == 0 ? hmax8(worst) : NAN;
}

/* 4 float64 lanes of element i of an array of the given kind (1: float64; the others as load8) */
AVX2 static inline __m256d load4d(const void *base, int kind, Py_ssize_t i) {
    if (kind == 1) return _mm256_loadu_pd((const double *)base + i);
    if (kind == 0) return _mm256_cvtps_pd(_mm_loadu_ps((const float *)base + i));
    const __m128i h = _mm_loadl_epi64((const __m128i *)((const uint16_t *)base + i));
    if (kind == 3) return _mm256_cvtps_pd(_mm_cvtph_ps(h));
    return _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16)));
}

/* worst_ulp in float64 for t of any kind against float64 r, over whole vectors of 4 (same NaN/Inf contract) */
AVX2 static double worst_ulp_f64(const void *t, int t_kind, const double *r, Py_ssize_t n, double low, double high) {
    const __m256d sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd();
    const __m256d lo = _mm256_set1_pd(low), hi = _mm256_set1_pd(high);
    const __m256d exp_bits = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FF0000000000000LL));
    __m256d worst = zero, bad = zero;
    for (Py_ssize_t i = 0; i < n; i += 4) {
        const __m256d tv = load4d(t, t_kind, i), rv = _mm256_loadu_pd(r + i);
        bad = _mm256_add_pd(bad, _mm256_add_pd(_mm256_sub_pd(tv, tv), _mm256_sub_pd(rv, rv)));
        const __m256d ad = _mm256_andnot_pd(sign, _mm256_sub_pd(tv, rv));
        const __m256d q = _mm256_div_pd(ad, _mm256_min_pd(_mm256_max_pd(_mm256_and_pd(rv, exp_bits), lo), hi));
        worst = _mm256_max_pd(q, worst);
    }
    double w[4], p[4];
    _mm256_storeu_pd(w, worst);
    _mm256_storeu_pd(p, bad);
    double out = w[0];
    for (int j = 1; j < 4; j++) out = w[j] > out ? w[j] : out;
    return p[0] + p[1] + p[2] + p[3] == 0 ? out : NAN;
}

/* sum of r^2 over whole vectors, as pass() sums (float32 within blocks, float64 across) */
AVX2 static double squares(const void *r, int r_kind, Py_ssize_t n) {
    double total = 0;
    for (Py_ssize_t i0 = 0; i0 < n; i0 += BLOCK) {
        const Py_ssize_t end = i0 + BLOCK < n ? i0 + BLOCK : n;
        __m256 q = _mm256_setzero_ps();
        for (Py_ssize_t i = i0; i < end; i += 8) {
            const __m256 v = load8(r, r_kind, i);
            q = _mm256_add_ps(q, _mm256_mul_ps(v, v));
        }
        total += hsum8(q);
    }
    return total;
}

static int have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2"); /* every AVX2 CPU has F16C (and an older compiler may not know the name "f16c") */
}
#else
static int have_avx2(void) { return 0; }
static double worst_ulp_f64(const void *t, int t_kind, const double *r, Py_ssize_t n, double low, double high) {
    (void)t, (void)t_kind, (void)r, (void)n, (void)low, (void)high;
    return 0;
}
static float worst_ulp(const void *t, int t_kind, const void *r, int r_kind, Py_ssize_t n, float low,
                       float high) {
    (void)t, (void)t_kind, (void)r, (void)r_kind, (void)n, (void)low, (void)high;
    return 0;
}
static double squares(const void *r, int r_kind, Py_ssize_t n) {
    (void)r, (void)r_kind, (void)n;
    return 0;
}
static void pass(const void *t, int t_kind, const void *r, int r_kind, Py_ssize_t n, int ulp, float low,
                 float high, float floor, sums_t *s) {
    (void)t, (void)t_kind, (void)r, (void)r_kind, (void)n, (void)ulp, (void)low, (void)high, (void)floor,
        (void)s;
}
#endif

static int avx2;

static size_t item_size(int kind) { return kind == 1 ? 8 : (kind == 0 ? 4 : 2); }

static int kind_ok(int kind) { return kind == 0 || kind == 2 || kind == 3; }

/* the tail of an array (its last rest elements, after whole) copied into 32 zero-padded bytes: 8 elements of
   float32 or narrower, 4 of float64 */
static void tail8(unsigned char *out, unsigned long long address, int kind, Py_ssize_t whole, Py_ssize_t rest) {
    memset(out, 0, 32);
    memcpy(out, (const char *)(uintptr_t)address + whole * item_size(kind), rest * item_size(kind));
}

static PyObject *sum_squares(PyObject *self, PyObject *args) {
    unsigned long long address;
    int kind;
    Py_ssize_t n;
    (void)self;
    if (!PyArg_ParseTuple(args, "Kin", &address, &kind, &n)) return NULL;
    if (n <= 0 || !kind_ok(kind) || address == 0) {
        PyErr_SetString(PyExc_ValueError, "sum_squares: n > 0, kind 0, 2 or 3, an address");
        return NULL;
    }
    if (!avx2) Py_RETURN_NONE;
    const Py_ssize_t whole = n - n % 8, rest = n - whole;
    unsigned char tail[32];
    double total = 0;
    Py_BEGIN_ALLOW_THREADS
    if (whole) total = squares((const void *)(uintptr_t)address, kind, whole);
    if (rest) {
        tail8(tail, address, kind, whole, rest);
        total += squares(tail, kind, 8);
    }
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(total);
}

static PyObject *max_ulp(PyObject *self, PyObject *args) {
    unsigned long long t_address, r_address;
    int t_kind, r_kind;
    Py_ssize_t n;
    double low, high;
    (void)self;
    if (!PyArg_ParseTuple(args, "KiKindd", &t_address, &t_kind, &r_address, &r_kind, &n, &low, &high)) return NULL;
    if (n <= 0 || !kind_ok(t_kind) || !kind_ok(r_kind) || t_address == 0 || r_address == 0 || !(low > 0) ||
        !(high >= low) || (double)(float)low != low || (double)(float)high != high) {
        PyErr_SetString(PyExc_ValueError, "max_ulp: n > 0, kinds 0, 2 or 3, addresses, 0 < low <= high in float32");
        return NULL;
    }
    if (!avx2) Py_RETURN_NONE;
    const Py_ssize_t whole = n - n % 8, rest = n - whole;
    unsigned char t_tail[32], r_tail[32];
    float worst = 0;
    Py_BEGIN_ALLOW_THREADS
    if (whole) worst = worst_ulp((const void *)(uintptr_t)t_address, t_kind, (const void *)(uintptr_t)r_address, r_kind, whole, (float)low, (float)high);
    if (rest) { /* zero pads: |0 - 0| / low = 0 */
        tail8(t_tail, t_address, t_kind, whole, rest);
        tail8(r_tail, r_address, r_kind, whole, rest);
        const float tail = worst_ulp(t_tail, t_kind, r_tail, r_kind, 8, (float)low, (float)high);
        worst = tail != tail ? tail : (tail > worst ? tail : worst);
    }
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble((double)worst);
}

static PyObject *max_ulp_f64(PyObject *self, PyObject *args) {
    unsigned long long t_address, r_address;
    int t_kind;
    Py_ssize_t n;
    double low, high;
    (void)self;
    if (!PyArg_ParseTuple(args, "KiKndd", &t_address, &t_kind, &r_address, &n, &low, &high)) return NULL;
    if (n <= 0 || !(kind_ok(t_kind) || t_kind == 1) || t_address == 0 || r_address == 0 || !(low > 0) ||
        !(high >= low)) {
        PyErr_SetString(PyExc_ValueError, "max_ulp_f64: n > 0, kind 0 to 3, addresses, 0 < low <= high");
        return NULL;
    }
    if (!avx2) Py_RETURN_NONE;
    const Py_ssize_t whole = n - n % 4, rest = n - whole;
    unsigned char t_tail[32], r_tail[32];
    double worst = 0;
    Py_BEGIN_ALLOW_THREADS
    if (whole) worst = worst_ulp_f64((const void *)(uintptr_t)t_address, t_kind, (const double *)(uintptr_t)r_address, whole, low, high);
    if (rest) { /* zero pads: |0 - 0| / low = 0 */
        tail8(t_tail, t_address, t_kind, whole, rest);
        tail8(r_tail, r_address, 1, whole, rest);
        const double tail = worst_ulp_f64(t_tail, t_kind, (const double *)r_tail, 4, low, high);
        worst = tail != tail ? tail : (tail > worst ? tail : worst);
    }
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(worst);
}

static PyObject *pair_sums(PyObject *self, PyObject *args) {
    unsigned long long t_address, r_address;
    int t_kind, r_kind, emin, emax;
    Py_ssize_t n;
    double floor;
    (void)self;
    if (!PyArg_ParseTuple(args, "KiKiniid", &t_address, &t_kind, &r_address, &r_kind, &n, &emin, &emax,
                          &floor))
        return NULL;
    if (n <= 0 || !kind_ok(t_kind) || !kind_ok(r_kind) || t_address == 0 || r_address == 0 || emin < -149 || emax > 127) {
        PyErr_SetString(PyExc_ValueError, "pair_sums: n > 0, kinds 0, 2 or 3, addresses, a float32 exponent range");
        return NULL;
    }
    if (!avx2) Py_RETURN_NONE;
    const int ulp = emin <= emax;
    const float low = ulp ? ldexpf(1.0f, emin) : 1.0f, high = ulp ? ldexpf(1.0f, emax) : 1.0f;
    sums_t s;
    memset(&s, 0, sizeof s);
    const Py_ssize_t whole = n - n % 8;
    /* the tail (n mod 8 elements) padded with zeros on both sides: d = 0 there, which adds 0 to every sum
       and maximum, and the pad's 0 <= 1e-3 comparisons are taken off the two counts below */
    unsigned char t_tail[32], r_tail[32];
    const Py_ssize_t rest = n - whole, pad = rest ? 8 - rest : 0;
    Py_BEGIN_ALLOW_THREADS
    if (whole) pass((const void *)(uintptr_t)t_address, t_kind, (const void *)(uintptr_t)r_address, r_kind, whole, ulp, low, high, (float)floor, &s);
    if (rest) {
        sums_t tail;
        memset(&tail, 0, sizeof tail);
        tail8(t_tail, t_address, t_kind, whole, rest);
        tail8(r_tail, r_address, r_kind, whole, rest);
        pass(t_tail, t_kind, r_tail, r_kind, 8, ulp, low, high, (float)floor, &tail);
        s.above += tail.above;
        s.differ += tail.differ;
        s.within_1e3 += tail.within_1e3 - pad;
        s.within_5e3 += tail.within_5e3 - pad;
        s.dd += tail.dd;
        s.tt += tail.tt;
        s.tr += tail.tr;
        s.ds += tail.ds;
        s.sum_rel += tail.sum_rel;
        s.sum_ulp += tail.sum_ulp;
#define KEEP_MAX(f) s.f = tail.f > s.f ? tail.f : s.f
        KEEP_MAX(max_abs);
        KEEP_MAX(max_r);
        KEEP_MAX(max_t);
        KEEP_MAX(max_rel);
        KEEP_MAX(max_ulp);
        KEEP_MAX(max_scaled);
    }
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(LLLLdddddddddddd)", s.above, s.differ, s.within_1e3, s.within_5e3, (double)s.max_abs,
                         (double)s.max_r, (double)s.max_t, (double)s.max_rel, (double)s.max_ulp,
                         (double)s.max_scaled, s.dd, s.tt, s.tr, s.ds, s.sum_rel, s.sum_ulp);
}

static PyMethodDef methods[] = {
    {"pair_sums", pair_sums, METH_VARARGS,
     "pair_sums(t_address, t_kind, r_address, r_kind, n, emin, emax, floor) -> the sums of metrics._pass, or "
     "None without AVX2"},
    {"max_ulp", max_ulp, METH_VARARGS,
     "max_ulp(t_address, t_kind, r_address, r_kind, n, low, high) -> metrics.max_ulp_ratio's float32 maximum (NaN "
     "for a NaN/Inf element, Inf for a ratio beyond float32), or None without AVX2"},
    {"max_ulp_f64", max_ulp_f64, METH_VARARGS,
     "max_ulp_f64(t_address, t_kind, r_address, n, low, high) -> max_ulp() in float64 of t (kind 0 to 3) against "
     "a float64 reference, or None without AVX2"},
    {"sum_squares", sum_squares, METH_VARARGS,
     "sum_squares(address, kind, n) -> the sum of squares pass() would make, or None without AVX2"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pair_sums", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pair_sums(void) {
    avx2 = have_avx2();
    return PyModule_Create(&module);
}
