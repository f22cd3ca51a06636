// src/nn/bn_cuda/kernels.cu run on the CPU (emulate.h; cuda_bf16.h here stands in for CUDA's)
// against batch norm's definition in double: the statistics, the forward with and without residual
// and ReLU, and every gradient against central finite differences of the double forward, with f32
// and with bf16 activations, each channel's sums split over one block, several, and more blocks
// than it has values. Prints "ok" and exits 0, or says what differs and exits 1. Built (with
// -I tests/cuda) and run by tests/scripts.rs.
#include "emulate.h"
#include "../../src/nn/bn_cuda/kernels.cu"

#include <cstdio>
#include <random>

static int failures = 0;

static void expect_close(const char* what, double got, double want, double tol) {
    double err = std::fabs(got - want) / std::fmax(1.0, std::fabs(want));
    if (!(err <= tol)) {
        if (failures < 20) std::printf("%s: got %.9g, want %.9g (error %.3g > %.3g)\n", what, got, want, err, tol);
        failures++;
    }
}

struct Case {
    int n, c, hw;
    bool residual, relu;
};

static const float EPS = 1e-5f;

// sum(y * up) for y = act(gamma * (x - mean) / sqrt(var + eps) + beta + r), all in double.
static double loss(const Case& k, const std::vector<double>& x, const std::vector<double>& gamma,
                   const std::vector<double>& beta, const std::vector<double>& r, const std::vector<double>& up,
                   std::vector<double>* y_out) {
    long long m = (long long)k.n * k.hw;
    double total = 0.0;
    for (int c = 0; c < k.c; c++) {
        double mean = 0.0, var = 0.0;
        for (int n = 0; n < k.n; n++)
            for (int i = 0; i < k.hw; i++) mean += x[((long long)n * k.c + c) * k.hw + i];
        mean /= m;
        for (int n = 0; n < k.n; n++)
            for (int i = 0; i < k.hw; i++) {
                double d = x[((long long)n * k.c + c) * k.hw + i] - mean;
                var += d * d;
            }
        var /= m;
        for (int n = 0; n < k.n; n++)
            for (int i = 0; i < k.hw; i++) {
                long long j = ((long long)n * k.c + c) * k.hw + i;
                double v = gamma[c] * (x[j] - mean) / std::sqrt(var + EPS) + beta[c] + (k.residual ? r[j] : 0.0);
                if (k.relu && v < 0.0) v = 0.0;
                if (y_out) (*y_out)[j] = v;
                total += v * up[j];
            }
    }
    return total;
}

inline float to_f(float v) { return v; }
inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> T from_f(float v);
template <> float from_f<float>(float v) { return v; }
template <> __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

// The kernels of one activation type (cfrun_bn_grad_final takes none).
template <typename T>
struct Kernels {
    void (*stats_part)(const T*, double*, unsigned, unsigned, unsigned, unsigned);
    void (*stats_final)(const T*, const double*, float*, unsigned, unsigned, unsigned, unsigned, float);
    void (*apply)(const T*, const float*, const float*, const T*, T*, unsigned, unsigned, unsigned, int);
    void (*grad_part)(const T*, const T*, const T*, const float*, double*, unsigned, unsigned, unsigned, unsigned);
    void (*input)(const T*, const T*, const T*, const float*, const float*, const float*, T*, T*, unsigned, unsigned,
                  unsigned);
};

// One case in activation type T with each channel's sums over `S` blocks; `tol` is the tolerance
// of values T rounds (f32: its own, bf16: 2^-8).
template <typename T>
static void run(const Case& k, unsigned S, unsigned seed, const Kernels<T>& kern, double tol) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(-2.0, 2.0);
    long long total = (long long)k.n * k.c * k.hw;
    std::vector<T> x(total), r(total), dy(total);
    std::vector<float> gb(2 * k.c);
    for (auto& v : x) v = from_f<T>((float)(u(rng) * 1.5 + 0.3));
    for (auto& v : r) v = from_f<T>((float)u(rng));
    for (auto& v : dy) v = from_f<T>((float)u(rng));
    for (int c = 0; c < k.c; c++) {
        gb[c] = (float)(0.5 + 0.25 * u(rng));
        gb[k.c + c] = (float)(0.5 * u(rng));
    }
    auto wide = [](const std::vector<T>& v) {
        std::vector<double> d;
        for (const T& e : v) d.push_back(to_f(e));
        return d;
    };
    std::vector<double> xd = wide(x), rd = wide(r), upd = wide(dy);
    std::vector<double> gd(gb.begin(), gb.begin() + k.c), bd(gb.begin() + k.c, gb.end()), yd(total);
    loss(k, xd, gd, bd, rd, upd, &yd);
    char what[160];

    std::vector<float> stats(3 * k.c), dgb(2 * k.c);
    std::vector<double> part(2 * k.c * S);
    std::vector<T> y(total), dx(total), dr(total, from_f<T>(-7.0f));
    launch(k.c * S, THREADS, [&] { kern.stats_part(x.data(), part.data(), k.n, k.c, k.hw, S); });
    const unsigned finals = (k.c + THREADS - 1) / THREADS;
    launch(finals, THREADS, [&] { kern.stats_final(x.data(), part.data(), stats.data(), k.n, k.c, k.hw, S, EPS); });
    for (int c = 0; c < k.c; c++) {
        double mean = 0.0, var = 0.0;
        long long m = (long long)k.n * k.hw;
        for (int n = 0; n < k.n; n++)
            for (int i = 0; i < k.hw; i++) mean += xd[((long long)n * k.c + c) * k.hw + i];
        mean /= m;
        for (int n = 0; n < k.n; n++)
            for (int i = 0; i < k.hw; i++) var += std::pow(xd[((long long)n * k.c + c) * k.hw + i] - mean, 2);
        std::snprintf(what, sizeof what, "case %u: mean of channel %d", seed, c);
        expect_close(what, stats[c], mean, 1e-6);
        std::snprintf(what, sizeof what, "case %u: variance of channel %d", seed, c);
        expect_close(what, stats[k.c + c], var / m, 1e-6);
        std::snprintf(what, sizeof what, "case %u: 1 / std of channel %d", seed, c);
        expect_close(what, stats[2 * k.c + c], 1.0 / std::sqrt(var / m + EPS), 1e-6);
    }
    // Fewer blocks than values: the elementwise kernels' grid-stride loops must cover the rest.
    launch(3, THREADS, [&] {
        kern.apply(x.data(), stats.data(), gb.data(), k.residual ? r.data() : nullptr, y.data(), k.n, k.c, k.hw, k.relu);
    });
    for (long long j = 0; j < total; j++) {
        std::snprintf(what, sizeof what, "case %u: y[%lld]", seed, j);
        expect_close(what, to_f(y[j]), yd[j], tol);
    }
    const T* mask = k.relu ? y.data() : nullptr;
    launch(k.c * S, THREADS, [&] { kern.grad_part(x.data(), mask, dy.data(), stats.data(), part.data(), k.n, k.c, k.hw, S); });
    launch(finals, THREADS, [&] { cfrun_bn_grad_final(part.data(), stats.data(), dgb.data(), k.c, S); });
    launch(2, THREADS, [&] {
        kern.input(x.data(), mask, dy.data(), stats.data(), gb.data(), dgb.data(), dx.data(),
                   k.residual ? dr.data() : nullptr, k.n, k.c, k.hw);
    });
    // Central differences of the double forward; a point within h of the ReLU's kink is skipped.
    const double h = 1e-6;
    auto near_kink = [&](long long j) { return k.relu && std::fabs(yd[j]) < 1e-9; };
    auto diff = [&](std::vector<double>& v, long long j) {
        double keep = v[j];
        v[j] = keep + h;
        double up = loss(k, xd, gd, bd, rd, upd, nullptr);
        v[j] = keep - h;
        double down = loss(k, xd, gd, bd, rd, upd, nullptr);
        v[j] = keep;
        return (up - down) / (2 * h);
    };
    for (long long j = 0; j < total; j += 7) {
        std::snprintf(what, sizeof what, "case %u: dx[%lld]", seed, j);
        expect_close(what, to_f(dx[j]), diff(xd, j), 2e-3 + tol);
        if (k.residual && !near_kink(j)) {
            std::snprintf(what, sizeof what, "case %u: dresidual[%lld]", seed, j);
            expect_close(what, to_f(dr[j]), diff(rd, j), 2e-3 + tol);
        }
    }
    if (!k.residual && to_f(dr[0]) != -7.0f) {
        std::printf("case %u: the residual gradient was written without a residual\n", seed);
        failures++;
    }
    for (int c = 0; c < k.c; c++) {
        std::snprintf(what, sizeof what, "case %u: dgamma[%d]", seed, c);
        expect_close(what, dgb[c], diff(gd, c), 2e-3 + tol);
        std::snprintf(what, sizeof what, "case %u: dbeta[%d]", seed, c);
        expect_close(what, dgb[k.c + c], diff(bd, c), 2e-3 + tol);
    }
}

// More channels than a block's threads: the final sums run over two blocks and every channel's
// totals come out, read from planted partial sums (the partial kernels' barriers make a launch of
// hundreds of blocks slow to emulate).
static void finals_cover_every_channel() {
    const unsigned C = THREADS + 44, S = 3, N = 2, HW = 5;
    std::vector<double> part(2 * C * S);
    for (unsigned i = 0; i < part.size(); i++) part[i] = 0.25 * (i % 7) + 0.5 * (i % 2);
    std::vector<float> x(N * C * HW, 1.5f), stats(3 * C), dgb(2 * C);
    const unsigned finals = (C + THREADS - 1) / THREADS;
    launch(finals, THREADS, [&] { cfrun_bn_stats_final_f32(x.data(), part.data(), stats.data(), N, C, HW, S, EPS); });
    launch(finals, THREADS, [&] { cfrun_bn_grad_final(part.data(), stats.data(), dgb.data(), C, S); });
    char what[160];
    for (unsigned c = 0; c < C; c++) {
        double s1 = 0.0, s2 = 0.0;
        for (unsigned s = 0; s < S; s++) {
            s1 += part[2 * (c * S + s)];
            s2 += part[2 * (c * S + s) + 1];
        }
        double m = (double)N * HW, shift = s1 / m, var = std::fmax(0.0, s2 / m - shift * shift);
        std::snprintf(what, sizeof what, "wide: mean of channel %u", c);
        expect_close(what, stats[c], 1.5 + shift, 1e-6);
        std::snprintf(what, sizeof what, "wide: variance of channel %u", c);
        expect_close(what, stats[C + c], var, 1e-6);
        std::snprintf(what, sizeof what, "wide: dgamma of channel %u", c);
        expect_close(what, dgb[c], s2 * stats[2 * C + c], 1e-6);
        std::snprintf(what, sizeof what, "wide: dbeta of channel %u", c);
        expect_close(what, dgb[C + c], s1, 1e-6);
    }
}

int main() {
    // Channels of fewer values than a block's threads, of more (the strided loops), odd sizes.
    const Case cases[] = {{2, 3, 9, false, false}, {3, 4, 25, true, true}, {4, 2, 100, false, true},
                          {1, 3, 300, true, false}, {5, 2, 7, true, true}};
    const Kernels<float> f32 = {cfrun_bn_stats_part_f32, cfrun_bn_stats_final_f32, cfrun_bn_apply_f32,
                                cfrun_bn_grad_part_f32, cfrun_bn_grad_input_f32};
    const Kernels<__nv_bfloat16> bf16 = {cfrun_bn_stats_part_bf16, cfrun_bn_stats_final_bf16, cfrun_bn_apply_bf16,
                                         cfrun_bn_grad_part_bf16, cfrun_bn_grad_input_bf16};
    unsigned seed = 1;
    // One block per channel; several, the last slice shorter; more blocks than values (empty slices).
    for (unsigned S : {1u, 3u})
        for (const Case& k : cases) run(k, S, seed++, f32, 2e-5);
    for (unsigned S : {1u, 3u})
        for (const Case& k : cases) run(k, S, seed++, bf16, 1.0 / 256);
    run(cases[0], 2 * cases[0].n * cases[0].hw + 1, seed++, f32, 2e-5);
    run(cases[0], 2 * cases[0].n * cases[0].hw + 1, seed++, bf16, 1.0 / 256);
    finals_cover_every_channel();
    // The shim's rounding itself: to nearest, ties to even, NaN kept.
    // (bf16 keeps 7 bits after the point: a step of 2^-7 at 1, so 2^-8 and 3 * 2^-8 are ties.)
    expect_close("bf16(1 + 2^-9)", __bfloat162float(__float2bfloat16(1.0f + 1.0f / 512)), 1.0, 0);
    expect_close("bf16(1 + 2^-8)", __bfloat162float(__float2bfloat16(1.0f + 1.0f / 256)), 1.0, 0);
    expect_close("bf16(1 + 3 * 2^-8)", __bfloat162float(__float2bfloat16(1.0f + 3.0f / 256)), 1.0 + 1.0 / 64, 0);
    if (!std::isnan(__bfloat162float(__float2bfloat16(NAN)))) failures++;
    if (failures) {
        std::printf("%d values differ\n", failures);
        return 1;
    }
    std::printf("ok\n");
    return 0;
}
