// Just enough of CUDA to run cfrun's kernels as C++ on the CPU, for their tests on machines without
// a GPU: each block's threads are real threads (so __syncthreads is a real barrier), blocks one
// after another (so __shared__ arrays can be plain statics). Indexing and arithmetic are what it
// checks; the PTX, launch sizes and memory model are for check-device on a card.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// Where a block's threads meet.
enum class Meeting { Syncthreads, BlockEnd };

// A block's barrier that knows where each thread arrived from. On a GPU a thread that returns
// before a __syncthreads the others reach is undefined behaviour; here it would meet them at the
// block's end instead and throw every later meeting out of step, so the test would hang. Instead
// the first arrival at another meeting than the round's first ends the program with a message
// naming both threads. Each thread counts its own meetings; the k-th meeting of all threads is
// one round of the barrier, claimed by its first arrival (the meeting and the thread) in one of
// two slots, which round k's completion clears before any thread can start round k + 1.
struct Rounds {
    std::atomic<long> claim[2] = {-1, -1};
    unsigned done = 0;  // written by the completion alone, while every thread waits
    void operator()() noexcept { claim[done++ & 1] = -1; }
};
struct RoundDone {
    Rounds* rounds;
    void operator()() noexcept { (*rounds)(); }
};
inline Rounds* block_rounds = nullptr;
inline std::barrier<RoundDone>* block_barrier = nullptr;
inline thread_local unsigned my_round = 0;

inline const char* meeting_name(long at) {
    return at == (long)Meeting::Syncthreads ? "__syncthreads" : "the block's end";
}

inline void meet(Meeting here) {
    long mine = (long)here | (long)threadIdx.x << 1, claimed = -1;
    auto& slot = block_rounds->claim[my_round++ & 1];
    if (!slot.compare_exchange_strong(claimed, mine) && (claimed & 1) != (long)here) {
        std::fprintf(stderr, "emulate.h: in block %u, thread %u reached %s but thread %ld had reached %s "
                     "(a return before __syncthreads?)\n", blockIdx.x, threadIdx.x, meeting_name((long)here),
                     claimed >> 1, meeting_name(claimed & 1));
        std::abort();
    }
    block_barrier->arrive_and_wait();
}

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

inline void __syncthreads() { meet(Meeting::Syncthreads); }
inline void __trap() { std::abort(); }
using std::min;

// Runs `kernel` as `grid` blocks of `block` threads: one set of threads walks the blocks in order,
// meeting at a barrier after each (so no thread starts a block while another still reads the last
// one's __shared__ statics).
inline void launch(unsigned grid, unsigned block, const std::function<void()>& kernel) {
    gridDim.x = grid;
    blockDim.x = block;
    Rounds rounds;
    std::barrier<RoundDone> barrier(block, RoundDone{&rounds});
    block_rounds = &rounds;
    block_barrier = &barrier;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; t++) {
        threads.emplace_back([&, t] {
            threadIdx.x = t;
            for (unsigned b = 0; b < grid; b++) {
                blockIdx.x = b;
                kernel();
                meet(Meeting::BlockEnd);
            }
        });
    }
    for (auto& th : threads) th.join();
}
