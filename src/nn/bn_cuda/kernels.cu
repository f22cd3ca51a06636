// Batch norm in train mode over contiguous NCHW tensors, four kernels for the whole layer: the
// batch statistics, the normalisation with affine, residual and ReLU, and the two passes of its
// gradient. Activations and their gradients are f32 or bf16 (mixed precision: the statistics,
// gamma, beta and their gradients stay f32, as does all arithmetic). Reductions run one block per
// channel, accumulate in double and combine in a fixed tree, so a run repeats bit for bit.
// Written for cfrun (src/nn/bn_cuda/mod.rs says why).
#include <cuda_bf16.h>

#define THREADS 256

__device__ __forceinline__ float load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float load(const __nv_bfloat16* p, long long i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, long long i, float v) { p[i] = __float2bfloat16(v); }

// The sum of every thread's `v` in the block, in a fixed order; every thread gets it.
__device__ double block_sum(double v) {
    __shared__ double part[THREADS];
    __syncthreads();  // the previous call's readers are done with `part`
    part[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    return part[0];
}

// Index of the k-th value of channel c: k runs over the N * HW values of the channel.
__device__ __forceinline__ long long at(long long k, int c, int C, int HW) {
    long long n = k / HW;
    return (n * C + c) * HW + (k - n * HW);
}

// stats[c] = mean, stats[C + c] = biased variance of channel c (two passes: the mean, then the
// centred squares). One block of THREADS per channel.
template <typename T>
__device__ void stats(const T* x, float* out, int N, int C, int HW) {
    int c = blockIdx.x;
    long long m = (long long)N * HW;
    double s = 0.0;
    for (long long k = threadIdx.x; k < m; k += THREADS) s += (double)load(x, at(k, c, C, HW));
    double mean = block_sum(s) / (double)m;
    double q = 0.0;
    for (long long k = threadIdx.x; k < m; k += THREADS) {
        double d = (double)load(x, at(k, c, C, HW)) - mean;
        q += d * d;
    }
    double var = block_sum(q) / (double)m;
    if (threadIdx.x == 0) {
        out[c] = (float)mean + 0.0f;  // + 0: a mean of -0 is stored as +0, as the other paths do
        out[C + c] = (float)var;
    }
}

__device__ __forceinline__ float invstd_of(const float* stats, int c, int C, float eps) {
    return (float)(1.0 / sqrt((double)stats[C + c] + (double)eps));
}

// y = act(gamma * (x - mean) * invstd + beta + r), gb = [gamma; beta], r may be null.
template <typename T>
__device__ void apply(const T* x, const float* st, const float* gb, const T* r, T* y, int N, int C, int HW, int relu,
                      float eps) {
    long long total = (long long)N * C * HW;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int c = (int)((i / HW) % C);
        float v = gb[c] * ((load(x, i) - st[c]) * invstd_of(st, c, C, eps)) + gb[C + c];
        if (r) v += load(r, i);
        store(y, i, relu && !(v > 0.0f) ? 0.0f : v);
    }
}

// The gradient reaching the normalisation: dy, zero where the ReLU cut the output (y may be
// null when there is no ReLU).
template <typename T>
__device__ __forceinline__ float masked(const T* dy, const T* y, long long i) {
    return y && !(load(y, i) > 0.0f) ? 0.0f : load(dy, i);
}

// dgb[c] = dgamma = sum(g * xhat), dgb[C + c] = dbeta = sum(g) over channel c. One block per channel.
template <typename T>
__device__ void grad_sums(const T* x, const T* y, const T* dy, const float* st, float* dgb, int N, int C, int HW,
                          float eps) {
    int c = blockIdx.x;
    long long m = (long long)N * HW;
    double mean = (double)st[c];
    double sg = 0.0, sgx = 0.0;
    for (long long k = threadIdx.x; k < m; k += THREADS) {
        long long i = at(k, c, C, HW);
        double g = (double)masked(dy, y, i);
        sg += g;
        sgx += g * ((double)load(x, i) - mean);
    }
    double dbeta = block_sum(sg);
    double dgamma = block_sum(sgx) * (double)invstd_of(st, c, C, eps);
    if (threadIdx.x == 0) {
        dgb[c] = (float)dgamma;
        dgb[C + c] = (float)dbeta;
    }
}

// dx = gamma * invstd * (g - dbeta / M - xhat * dgamma / M), and dr = g where dr is not null.
template <typename T>
__device__ void grad_input(const T* x, const T* y, const T* dy, const float* st, const float* gb, const float* dgb,
                           T* dx, T* dr, int N, int C, int HW, float eps) {
    long long total = (long long)N * C * HW;
    float inv_m = 1.0f / (float)((long long)N * HW);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int c = (int)((i / HW) % C);
        float invstd = invstd_of(st, c, C, eps);
        float g = masked(dy, y, i);
        float xhat = (load(x, i) - st[c]) * invstd;
        store(dx, i, gb[c] * invstd * (g - dgb[C + c] * inv_m - xhat * dgb[c] * inv_m));
        if (dr) store(dr, i, g);
    }
}

// The entry points, one per activation type.
#define ENTRIES(T, SUFFIX)                                                                                         \
    extern "C" __global__ void cfrun_bn_stats_##SUFFIX(const T* x, float* out, int N, int C, int HW) {            \
        stats(x, out, N, C, HW);                                                                                   \
    }                                                                                                              \
    extern "C" __global__ void cfrun_bn_apply_##SUFFIX(const T* x, const float* st, const float* gb, const T* r,  \
                                                       T* y, int N, int C, int HW, int relu, float eps) {          \
        apply(x, st, gb, r, y, N, C, HW, relu, eps);                                                               \
    }                                                                                                              \
    extern "C" __global__ void cfrun_bn_grad_sums_##SUFFIX(const T* x, const T* y, const T* dy, const float* st,  \
                                                           float* dgb, int N, int C, int HW, float eps) {          \
        grad_sums(x, y, dy, st, dgb, N, C, HW, eps);                                                               \
    }                                                                                                              \
    extern "C" __global__ void cfrun_bn_grad_input_##SUFFIX(const T* x, const T* y, const T* dy, const float* st, \
                                                            const float* gb, const float* dgb, T* dx, T* dr,       \
                                                            int N, int C, int HW, float eps) {                     \
        grad_input(x, y, dy, st, gb, dgb, dx, dr, N, C, HW, eps);                                                  \
    }

ENTRIES(float, f32)
ENTRIES(__nv_bfloat16, bf16)
