/* One pass over a contiguous CPU buffer: its max, min, sum and sum of squares.

   Why compiled: torch's CPU statistics of one tensor are four kernels (aminmax, which propagates NaN and
   is the slowest of them, sum, a dot product, four reads), each a Python call; the capture computes them
   for every op output. Here they are one call and one pass over memory the op has just written.

   stats_body(...) (the same arguments) -> the capture's JSON fragment of the statistics in the common case
   (see it below), so that a record's statistics cost no Python float formatting.
   moments(address, kind, sizes, strides, capacity) -> (max, min, sum, sumsq) as floats, or None for a layout
   it leaves to torch (see strided()) or elements beyond the capacity bytes readable from address (the rest
   of the tensor's storage); kind 0 float32, 1 float64, 2 bfloat16, 3 float16; sizes and strides in elements,
   as torch gives them. float32/bfloat16/float16 elements are summed as float32 within blocks of 256 elements
   (16 per vector lane) and the blocks' sums in float64; float64 elements in float64 throughout.
   NaN is skipped by max and min (the x86 max instruction returns its second operand when either is NaN)
   but not by the sums: a caller reads a non-finite sum as "count NaN/Inf the slow way" (stats.py).
   Built by setup.py where a C compiler is (optional=True); without it stats.py uses torch's kernels. Off
   x86-64 (an Arm host), or compiled with -DASCEND_DOCTOR_NO_SIMD, only the portable kernels exist. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 256
#define LANES 16

typedef struct {
    double mx, mn, sum, sq;
} moments_t;

static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float f16_to_float(uint16_t h) {
    /* exponent and mantissa moved into a float32 and rescaled by 2^112 (subnormals included) */
    uint32_t u = (uint32_t)(h & 0x7fff) << 13;
    float f;
    memcpy(&f, &u, 4);
    f *= 5.192296858534828e+33f;
    memcpy(&u, &f, 4);
    if ((h & 0x7c00) == 0x7c00) u = 0x7f800000u | ((uint32_t)(h & 0x3ff) << 13); /* Inf, NaN */
    u |= (uint32_t)(h & 0x8000) << 16;
    memcpy(&f, &u, 4);
    return f;
}

static inline float f32_load(float v) { return v; }

/* the elements from i on, one by one, into a, b, sum and sq (of the kernel around it); then its result */
#define FINISH_FLOAT(LOAD)          \
    for (; i < n; i++) {            \
        const float v = LOAD(x[i]); \
        a = v > a ? v : a;          \
        b = v < b ? v : b;          \
        sum += v;                   \
        sq += (double)v * v;        \
    }                               \
    m->mx = a;                      \
    m->mn = b;                      \
    m->sum = sum;                   \
    m->sq = sq;

/* Portable kernels: independent lanes the compiler vectorises without reassociating anything. */
#define PORTABLE(NAME, T, LOAD)                                                         \
    static void NAME(const T *restrict x, Py_ssize_t n, moments_t *m) {                \
        float mx[LANES], mn[LANES];                                                     \
        double sum = 0, sq = 0;                                                         \
        const float first = LOAD(x[0]);                                                 \
        for (int j = 0; j < LANES; j++) mx[j] = mn[j] = first;                          \
        Py_ssize_t i = 0;                                                               \
        for (; i + BLOCK <= n; i += BLOCK) {                                            \
            float s[LANES] = {0}, q[LANES] = {0};                                       \
            for (Py_ssize_t k = i; k < i + BLOCK; k += LANES)                           \
                for (int j = 0; j < LANES; j++) {                                       \
                    const float v = LOAD(x[k + j]);                                     \
                    mx[j] = v > mx[j] ? v : mx[j];                                      \
                    mn[j] = v < mn[j] ? v : mn[j];                                      \
                    s[j] += v;                                                          \
                    q[j] += v * v;                                                      \
                }                                                                       \
            float bs = 0, bq = 0;                                                       \
            for (int j = 0; j < LANES; j++) {                                           \
                bs += s[j];                                                             \
                bq += q[j];                                                             \
            }                                                                           \
            sum += bs;                                                                  \
            sq += bq;                                                                   \
        }                                                                               \
        float a = mx[0], b = mn[0];                                                     \
        for (int j = 1; j < LANES; j++) {                                               \
            a = mx[j] > a ? mx[j] : a;                                                  \
            b = mn[j] < b ? mn[j] : b;                                                  \
        }                                                                               \
        FINISH_FLOAT(LOAD)                                                              \
    }

PORTABLE(portable_f32, float, f32_load)
PORTABLE(portable_bf16, uint16_t, bf16_to_float)
PORTABLE(portable_f16, uint16_t, f16_to_float)

/* float64 lanes combined, then the tail from element i on, element by element */
static void finish_f64(const double *hi, const double *lo, const double *s, const double *q, int lanes,
                       const double *x, Py_ssize_t i, Py_ssize_t n, moments_t *m) {
    double a = hi[0], b = lo[0], sum = 0, sq = 0;
    for (int j = 0; j < lanes; j++) {
        a = hi[j] > a ? hi[j] : a;
        b = lo[j] < b ? lo[j] : b;
        sum += s[j];
        sq += q[j];
    }
    for (; i < n; i++) {
        const double v = x[i];
        a = v > a ? v : a;
        b = v < b ? v : b;
        sum += v;
        sq += v * v;
    }
    m->mx = a;
    m->mn = b;
    m->sum = sum;
    m->sq = sq;
}

static void portable_f64(const double *restrict x, Py_ssize_t n, moments_t *m) {
    double mx[8], mn[8], s[8] = {0}, q[8] = {0};
    for (int j = 0; j < 8; j++) mx[j] = mn[j] = x[0];
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            const double v = x[i + j];
            mx[j] = v > mx[j] ? v : mx[j];
            mn[j] = v < mn[j] ? v : mn[j];
            s[j] += v;
            q[j] += v * v;
        }
    finish_f64(mx, mn, s, q, 8, x, i, n, m);
}

typedef void (*kernel_t)(const void *, Py_ssize_t, moments_t *);

static const kernel_t portable_kernels[4] = {
    (kernel_t)portable_f32,
    (kernel_t)portable_f64,
    (kernel_t)portable_bf16,
    (kernel_t)portable_f16,
};

static kernel_t kernels[4] = {
    (kernel_t)portable_f32,
    (kernel_t)portable_f64,
    (kernel_t)portable_bf16,
    (kernel_t)portable_f16,
};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(ASCEND_DOCTOR_NO_SIMD)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,f16c")))

AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

AVX2 static inline void finish8(__m256 mx, __m256 mn, float *a, float *b) {
    float hi[8], lo[8];
    _mm256_storeu_ps(hi, mx);
    _mm256_storeu_ps(lo, mn);
    *a = hi[0];
    *b = lo[0];
    for (int j = 1; j < 8; j++) {
        *a = hi[j] > *a ? hi[j] : *a;
        *b = lo[j] < *b ? lo[j] : *b;
    }
}

/* 16 elements per step in two 8-lane registers; LOAD8(p) gives 8 float32 lanes from element pointer p */
#define AVX2_KERNEL(NAME, T, LOAD8, LOAD1)                                                      \
    AVX2 static void NAME(const T *restrict x, Py_ssize_t n, moments_t *m) {                   \
        __m256 mx0 = _mm256_set1_ps(LOAD1(x[0])), mn0 = mx0, mx1 = mx0, mn1 = mx0;               \
        double sum = 0, sq = 0;                                                                 \
        Py_ssize_t i = 0;                                                                       \
        for (; i + BLOCK <= n; i += BLOCK) {                                                    \
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, q0 = s0, q1 = s0;                         \
            for (Py_ssize_t k = i; k < i + BLOCK; k += 16) {                                    \
                const __m256 a = LOAD8(x + k), b = LOAD8(x + k + 8);                            \
                mx0 = _mm256_max_ps(a, mx0);                                                    \
                mn0 = _mm256_min_ps(a, mn0);                                                    \
                mx1 = _mm256_max_ps(b, mx1);                                                    \
                mn1 = _mm256_min_ps(b, mn1);                                                    \
                s0 = _mm256_add_ps(s0, a);                                                      \
                s1 = _mm256_add_ps(s1, b);                                                      \
                q0 = _mm256_add_ps(q0, _mm256_mul_ps(a, a));                                    \
                q1 = _mm256_add_ps(q1, _mm256_mul_ps(b, b));                                    \
            }                                                                                   \
            sum += hsum8(_mm256_add_ps(s0, s1));                                                \
            sq += hsum8(_mm256_add_ps(q0, q1));                                                 \
        }                                                                                       \
        float a, b;                                                                             \
        finish8(_mm256_max_ps(mx0, mx1), _mm256_min_ps(mn0, mn1), &a, &b);                      \
        FINISH_FLOAT(LOAD1)                                                                     \
    }

#define LOAD_F32(p) _mm256_loadu_ps(p)
#define LOAD_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))

AVX2_KERNEL(avx2_f32, float, LOAD_F32, f32_load)
AVX2_KERNEL(avx2_bf16, uint16_t, LOAD_BF16, bf16_to_float)
AVX2_KERNEL(avx2_f16, uint16_t, LOAD_F16, f16_to_float)

AVX2 static void avx2_f64(const double *restrict x, Py_ssize_t n, moments_t *m) {
    __m256d mx0 = _mm256_set1_pd(x[0]), mn0 = mx0, mx1 = mx0, mn1 = mx0;
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256d a = _mm256_loadu_pd(x + i), b = _mm256_loadu_pd(x + i + 4);
        mx0 = _mm256_max_pd(a, mx0);
        mn0 = _mm256_min_pd(a, mn0);
        mx1 = _mm256_max_pd(b, mx1);
        mn1 = _mm256_min_pd(b, mn1);
        s0 = _mm256_add_pd(s0, a);
        s1 = _mm256_add_pd(s1, b);
        q0 = _mm256_add_pd(q0, _mm256_mul_pd(a, a));
        q1 = _mm256_add_pd(q1, _mm256_mul_pd(b, b));
    }
    double hi[4], lo[4], s[4], q[4];
    _mm256_storeu_pd(hi, _mm256_max_pd(mx0, mx1));
    _mm256_storeu_pd(lo, _mm256_min_pd(mn0, mn1));
    _mm256_storeu_pd(s, _mm256_add_pd(s0, s1));
    _mm256_storeu_pd(q, _mm256_add_pd(q0, q1));
    finish_f64(hi, lo, s, q, 4, x, i, n, m);
}

static void use_avx2_if_present(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) { /* every AVX2 CPU has F16C (and an older compiler may not know the name "f16c") */
        kernels[0] = (kernel_t)avx2_f32;
        kernels[1] = (kernel_t)avx2_f64;
        kernels[2] = (kernel_t)avx2_bf16;
        kernels[3] = (kernel_t)avx2_f16;
    }
}
#else
static void use_avx2_if_present(void) {}
#endif

static const size_t item_size[4] = {4, 8, 2, 2};

#define MAX_DIMS 16

/* Any strided layout: size-1 dimensions dropped; a stride-0 dimension (an expanded tensor) repeats every
   element, which leaves max and min alone and multiplies the sums; the rest sorted by stride and merged
   where one dimension continues the next, so a contiguous or permuted dense tensor is one run. The
   innermost dimension must then have stride 1 (rows, e.g. a slice of the last dimension); any other layout
   returns None: torch's reductions. */
/* 1: *out holds the moments of the tensor the arguments describe (sums times the repetitions), *kind_out its
   kind and *count its number of elements; 0: a layout or storage left to torch; -1: an exception is set. */
static int strided(PyObject *args, const kernel_t *table, moments_t *out, int *kind_out, double *count) {
    unsigned long long address;
    int kind;
    PyObject *size_obj, *stride_obj;
    Py_ssize_t capacity, last = 0; /* bytes readable from address on; the largest element offset */
    Py_ssize_t size[MAX_DIMS], stride[MAX_DIMS];
    double repeat = 1, elements = 1;
    int nd = 0;
    if (!PyArg_ParseTuple(args, "KiOOn", &address, &kind, &size_obj, &stride_obj, &capacity)) return -1;
    PyObject *sizes = PySequence_Fast(size_obj, "sizes must be a sequence");
    if (sizes == NULL) return -1;
    PyObject *strides = PySequence_Fast(stride_obj, "strides must be a sequence");
    if (strides == NULL) {
        Py_DECREF(sizes);
        return -1;
    }
    const Py_ssize_t ndim = PySequence_Fast_GET_SIZE(sizes);
    int bad = ndim != PySequence_Fast_GET_SIZE(strides) || ndim > MAX_DIMS || kind < 0 || kind > 3;
    for (Py_ssize_t d = 0; d < ndim && !bad; d++) {
        const Py_ssize_t n = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(sizes, d));
        const Py_ssize_t st = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(strides, d));
        if (PyErr_Occurred() || n <= 0 || st < 0) {
            bad = 1;
            continue;
        }
        elements *= (double)n;
        if (n == 1) {
            continue;
        } else if (st > (PY_SSIZE_T_MAX - last) / (n - 1)) {
            last = PY_SSIZE_T_MAX; /* offsets beyond any memory: none are read (below) */
        } else if (st == 0) {
            repeat *= (double)n;
        } else {
            last += (n - 1) * st;
            int at = nd++; /* insertion sort, largest stride first */
            while (at > 0 && stride[at - 1] < st) {
                size[at] = size[at - 1];
                stride[at] = stride[at - 1];
                at--;
            }
            size[at] = n;
            stride[at] = st;
        }
    }
    Py_DECREF(sizes);
    Py_DECREF(strides);
    if (bad) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError,
                            "moments: sizes > 0, strides >= 0, as many of each, kind 0..3");
        return -1;
    }
    /* a storage smaller than the elements need (freed with resize_(0), a short storage): read nothing */
    if (address == 0 || capacity < 0 || last >= capacity / (Py_ssize_t)item_size[kind]) return 0;
    int kept = 0; /* dimension d merged into the one kept before it where it continues it */
    for (int d = 0; d < nd; d++) {
        if (kept > 0 && stride[kept - 1] == stride[d] * size[d]) {
            size[kept - 1] *= size[d];
            stride[kept - 1] = stride[d];
        } else {
            size[kept] = size[d];
            stride[kept] = stride[d];
            kept++;
        }
    }
    nd = kept;
    if (nd == 0) { /* one element, maybe repeated */
        size[0] = 1;
        stride[0] = 1;
        nd = 1;
    }
    if (stride[nd - 1] != 1) return 0;
    const Py_ssize_t row = size[nd - 1];
    Py_ssize_t rows = 1, index[MAX_DIMS] = {0};
    for (int d = 0; d < nd - 1; d++) rows *= size[d];
    moments_t all = {0, 0, 0, 0}, m;
    const char *base = (const char *)(uintptr_t)address;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t offset = 0;
    for (Py_ssize_t r = 0; r < rows; r++) {
        table[kind](base + (size_t)offset * item_size[kind], row, &m);
        if (r == 0) {
            all = m;
        } else {
            all.mx = m.mx > all.mx ? m.mx : all.mx;
            all.mn = m.mn < all.mn ? m.mn : all.mn;
            all.sum += m.sum;
            all.sq += m.sq;
        }
        for (int d = nd - 2; d >= 0; d--) { /* odometer over the outer dimensions */
            offset += stride[d];
            if (++index[d] < size[d]) break;
            offset -= stride[d] * size[d];
            index[d] = 0;
        }
    }
    Py_END_ALLOW_THREADS
    all.sum *= repeat;
    all.sq *= repeat;
    *out = all;
    *kind_out = kind;
    *count = elements;
    return 1;
}

static PyObject *as_tuple(PyObject *args, const kernel_t *table) {
    moments_t m;
    int kind;
    double count;
    const int found = strided(args, table, &m, &kind, &count);
    if (found < 0) return NULL;
    if (found == 0) Py_RETURN_NONE;
    return Py_BuildValue("(dddd)", m.mx, m.mn, m.sum, m.sq);
}

static PyObject *moments(PyObject *self, PyObject *args) {
    (void)self;
    return as_tuple(args, kernels);
}

static PyObject *portable_moments(PyObject *self, PyObject *args) {
    (void)self;
    return as_tuple(args, portable_kernels);
}

/* each kind's largest finite value: an extreme at it or beyond is a saturated (or infinite) element */
static const double kind_max[4] = {FLT_MAX, DBL_MAX, 3.38953138925153547590470800371487866880e+38, 65504.0};

/* The JSON fragment stats.py's row_json writes after a tensor's dtype and shape, for the common case of a
   capture: two or more elements, finite sums (no NaN or Inf element) and extremes strictly inside the kind's
   finite range (none saturated). Numbers as Python's repr writes them (PyOS_double_to_string 'r'), the mean
   as sum / count and the norm as sqrt(sum of squares), as stats.cpu_row computes them. None otherwise: the
   caller takes the row the slow way. */
static PyObject *stats_body(PyObject *self, PyObject *args) {
    (void)self;
    moments_t m;
    int kind;
    double count;
    const int found = strided(args, kernels, &m, &kind, &count);
    if (found < 0) return NULL;
    const double top = found ? kind_max[kind] : 0;
    if (found == 0 || count < 2 || !isfinite(m.sum) || !isfinite(m.sq) || !(-top < m.mn && m.mx < top))
        Py_RETURN_NONE;
    const double values[4] = {m.mx, m.mn, m.sum / count, sqrt(m.sq)};
    char *text[4] = {NULL, NULL, NULL, NULL};
    PyObject *body = NULL;
    int ok = 1;
    for (int i = 0; i < 4 && ok; i++) {
        text[i] = PyOS_double_to_string(values[i], 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        ok = text[i] != NULL;
    }
    if (ok)
        body = PyUnicode_FromFormat(
            ",\"stats\":{\"max\":%s,\"min\":%s,\"mean\":%s,\"norm\":%s,\"nan\":0,\"inf\":0,\"sat\":0}}",
            text[0], text[1], text[2], text[3]);
    for (int i = 0; i < 4; i++) PyMem_Free(text[i]);
    return body;
}

static PyObject *simd(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyBool_FromLong(kernels[0] != portable_kernels[0]);
}

static PyMethodDef methods[] = {
    {"moments", moments, METH_VARARGS,
     "moments(address, kind, sizes, strides, capacity) -> (max, min, sum, sum of squares), or None for a layout "
     "it leaves to torch or elements beyond capacity bytes"},
    {"portable_moments", portable_moments, METH_VARARGS, "moments() through the portable kernels (tests)"},
    {"stats_body", stats_body, METH_VARARGS,
     "stats_body(address, kind, sizes, strides, capacity) -> ',\"stats\":{...}}' for a tensor with two or more "
     "elements, none NaN, Inf or saturated; else None"},
    {"simd", simd, METH_NOARGS, "whether moments() uses the AVX2 kernels"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_moments", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__moments(void) {
    use_avx2_if_present();
    return PyModule_Create(&module);
}
