// Batch norm in train mode over contiguous NCHW tensors: six kernels for the whole layer, two for
// the batch statistics, one for the normalisation with affine, residual and ReLU, three for its
// gradient. Activations and their gradients are f32 or bf16 (mixed precision: the statistics,
// gamma, beta and their gradients stay f32, as does all arithmetic). Written for cfrun
// (src/nn/bn_cuda/mod.rs says why).
//
// The per-channel sums run in two launches so that a channel of 10^5 values is spread over the
// whole card rather than one block: each of S blocks per channel sums a fixed slice of it in double
// (`*_part`), then one thread per channel adds the S partial sums in order (`*_final`). Fixed slices
// and fixed orders: a run repeats bit for bit. Indices are unsigned 32-bit (the host sends no
// tensor of 2^31 values or more here), which keeps the per-value channel lookup cheap.
#include <cuda_bf16.h>

// Threads per block; the host launches exactly this many (the reductions trap otherwise).
#define THREADS 256

__device__ __forceinline__ float load(const float* p, unsigned i) { return p[i]; }
__device__ __forceinline__ float load(const __nv_bfloat16* p, unsigned i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store(float* p, unsigned i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, unsigned i, float v) { p[i] = __float2bfloat16(v); }

// The sums of every thread's `a` and `b` in the block, in a fixed order; every thread gets them.
__device__ void block_sum2(double& a, double& b) {
    __shared__ double pa[THREADS], pb[THREADS];
    if (blockDim.x != THREADS) __trap();
    pa[threadIdx.x] = a;
    pb[threadIdx.x] = b;
    __syncthreads();
    for (unsigned s = THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            pa[threadIdx.x] += pa[threadIdx.x + s];
            pb[threadIdx.x] += pb[threadIdx.x + s];
        }
        __syncthreads();
    }
    a = pa[0];
    b = pb[0];
}

// The values of channel c, k = 0 .. N * HW, at their places in the tensor.
__device__ __forceinline__ unsigned at(unsigned k, unsigned c, unsigned C, unsigned HW) {
    unsigned n = k / HW;
    return (n * C + c) * HW + (k - n * HW);
}

// The slice of its channel that block `blockIdx.x` = c * S + s sums: values [*begin, *end).
__device__ __forceinline__ unsigned slice(unsigned m, unsigned S, unsigned* begin, unsigned* end) {
    unsigned c = blockIdx.x / S, s = blockIdx.x % S;
    unsigned len = (m + S - 1) / S;
    *begin = min(m, s * len);
    *end = min(m, *begin + len);
    return c;
}

// part[2 * blockIdx.x + {0, 1}] = the sum of (x - K) and of (x - K)^2 over the block's slice, K
// being the channel's first value: a shift that keeps the one-pass variance exact enough in double.
template <typename T>
__device__ void stats_part(const T* x, double* part, unsigned N, unsigned C, unsigned HW, unsigned S) {
    unsigned begin, end;
    unsigned c = slice(N * HW, S, &begin, &end);
    double k0 = (double)load(x, c * HW);
    double s1 = 0.0, s2 = 0.0;
    for (unsigned k = begin + threadIdx.x; k < end; k += THREADS) {
        double d = (double)load(x, at(k, c, C, HW)) - k0;
        s1 += d;
        s2 += d * d;
    }
    block_sum2(s1, s2);
    if (threadIdx.x == 0) {
        part[2 * blockIdx.x] = s1;
        part[2 * blockIdx.x + 1] = s2;
    }
}

// Channel c's two totals over its S blocks' partial sums, added in block order.
__device__ __forceinline__ void totals(const double* part, unsigned c, unsigned S, double& a, double& b) {
    a = 0.0;
    b = 0.0;
    for (unsigned s = 0; s < S; s++) {
        a += part[2 * (c * S + s)];
        b += part[2 * (c * S + s) + 1];
    }
}

// stats = [mean; biased variance; 1 / sqrt(variance + eps)] per channel, from stats_part's sums.
template <typename T>
__device__ void stats_final(const T* x, const double* part, float* stats, unsigned N, unsigned C, unsigned HW,
                            unsigned S, float eps) {
    unsigned c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double s1, s2;
    totals(part, c, S, s1, s2);
    double m = (double)N * HW, shift = s1 / m;
    double v = s2 / m - shift * shift;
    float var = (float)(v < 0.0 ? 0.0 : v);  // rounding may dip below 0; a NaN stays NaN
    stats[c] = (float)((double)load(x, c * HW) + shift) + 0.0f;  // + 0: a mean of -0 is stored as +0
    stats[C + c] = var;
    stats[2 * C + c] = (float)(1.0 / sqrt((double)var + (double)eps));
}

// y = act(gamma * (x - mean) * invstd + beta + r), gb = [gamma; beta], r may be null.
template <typename T>
__device__ void apply(const T* x, const float* st, const float* gb, const T* r, T* y, unsigned N, unsigned C,
                      unsigned HW, int relu) {
    unsigned total = N * C * HW;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned c = (i / HW) % C;
        float v = gb[c] * ((load(x, i) - st[c]) * st[2 * C + c]) + gb[C + c];
        if (r) v += load(r, i);
        store(y, i, relu && !(v > 0.0f) ? 0.0f : v);
    }
}

// The gradient reaching the normalisation: dy, zero where the ReLU cut the output (y may be
// null when there is no ReLU).
template <typename T>
__device__ __forceinline__ float masked(const T* dy, const T* y, unsigned i) {
    return y && !(load(y, i) > 0.0f) ? 0.0f : load(dy, i);
}

// part[2 * blockIdx.x + {0, 1}] = the sums of g and of g * (x - mean) over the block's slice.
template <typename T>
__device__ void grad_part(const T* x, const T* y, const T* dy, const float* st, double* part, unsigned N, unsigned C,
                          unsigned HW, unsigned S) {
    unsigned begin, end;
    unsigned c = slice(N * HW, S, &begin, &end);
    double mean = (double)st[c];
    double sg = 0.0, sgx = 0.0;
    for (unsigned k = begin + threadIdx.x; k < end; k += THREADS) {
        unsigned i = at(k, c, C, HW);
        double g = (double)masked(dy, y, i);
        sg += g;
        sgx += g * ((double)load(x, i) - mean);
    }
    block_sum2(sg, sgx);
    if (threadIdx.x == 0) {
        part[2 * blockIdx.x] = sg;
        part[2 * blockIdx.x + 1] = sgx;
    }
}

// dgb = [dgamma = sum(g * xhat); dbeta = sum(g)] per channel, from grad_part's sums.
__device__ void grad_final(const double* part, const float* st, float* dgb, unsigned C, unsigned S) {
    unsigned c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double sg, sgx;
    totals(part, c, S, sg, sgx);
    dgb[c] = (float)(sgx * (double)st[2 * C + c]);
    dgb[C + c] = (float)sg;
}

// dx = gamma * invstd * (g - dbeta / M - xhat * dgamma / M), and dr = g where dr is not null.
template <typename T>
__device__ void grad_input(const T* x, const T* y, const T* dy, const float* st, const float* gb, const float* dgb,
                           T* dx, T* dr, unsigned N, unsigned C, unsigned HW) {
    unsigned total = N * C * HW;
    float inv_m = 1.0f / (float)(N * HW);
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned c = (i / HW) % C;
        float invstd = st[2 * C + c];
        float g = masked(dy, y, i);
        float xhat = (load(x, i) - st[c]) * invstd;
        store(dx, i, gb[c] * invstd * (g - dgb[C + c] * inv_m - xhat * dgb[c] * inv_m));
        if (dr) store(dr, i, g);
    }
}

// The entry points, one set per activation type (grad_final reads no activation: one for both).
#define ENTRIES(T, SUFFIX)                                                                                         \
    extern "C" __global__ void cfrun_bn_stats_part_##SUFFIX(const T* x, double* part, unsigned N, unsigned C,    \
                                                            unsigned HW, unsigned S) {                             \
        stats_part(x, part, N, C, HW, S);                                                                          \
    }                                                                                                              \
    extern "C" __global__ void cfrun_bn_stats_final_##SUFFIX(const T* x, const double* part, float* stats,        \
                                                             unsigned N, unsigned C, unsigned HW, unsigned S,      \
                                                             float eps) {                                          \
        stats_final(x, part, stats, N, C, HW, S, eps);                                                             \
    }                                                                                                              \
    extern "C" __global__ void cfrun_bn_apply_##SUFFIX(const T* x, const float* st, const float* gb, const T* r,  \
                                                       T* y, unsigned N, unsigned C, unsigned HW, int relu) {      \
        apply(x, st, gb, r, y, N, C, HW, relu);                                                                    \
    }                                                                                                              \
    extern "C" __global__ void cfrun_bn_grad_part_##SUFFIX(const T* x, const T* y, const T* dy, const float* st,  \
                                                           double* part, unsigned N, unsigned C, unsigned HW,      \
                                                           unsigned S) {                                           \
        grad_part(x, y, dy, st, part, N, C, HW, S);                                                                \
    }                                                                                                              \
    extern "C" __global__ void cfrun_bn_grad_input_##SUFFIX(const T* x, const T* y, const T* dy, const float* st, \
                                                            const float* gb, const float* dgb, T* dx, T* dr,       \
                                                            unsigned N, unsigned C, unsigned HW) {                 \
        grad_input(x, y, dy, st, gb, dgb, dx, dr, N, C, HW);                                                       \
    }

ENTRIES(float, f32)
ENTRIES(__nv_bfloat16, bf16)

extern "C" __global__ void cfrun_bn_grad_final(const double* part, const float* st, float* dgb, unsigned C,
                                               unsigned S) {
    grad_final(part, st, dgb, C, S);
}
