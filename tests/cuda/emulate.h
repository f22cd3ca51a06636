// Just enough of CUDA to run cfrun's kernels as C++ on the CPU, for their tests on machines without
// a GPU: each block's threads are real threads (so __syncthreads is a real barrier), blocks one
// after another (so __shared__ arrays can be plain statics). Indexing and arithmetic are what it
// checks; the PTX, launch sizes and memory model are for check-device on a card.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline void __trap() { std::abort(); }
using std::min;

// Runs `kernel` as `grid` blocks of `block` threads: one set of threads walks the blocks in order,
// meeting at a barrier after each (so no thread starts a block while another still reads the last
// one's __shared__ statics).
inline void launch(unsigned grid, unsigned block, const std::function<void()>& kernel) {
    gridDim.x = grid;
    blockDim.x = block;
    std::barrier<> barrier(block);
    block_barrier = &barrier;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; t++) {
        threads.emplace_back([&, t] {
            threadIdx.x = t;
            for (unsigned b = 0; b < grid; b++) {
                blockIdx.x = b;
                kernel();
                barrier.arrive_and_wait();
            }
        });
    }
    for (auto& th : threads) th.join();
}
