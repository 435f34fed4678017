// The CPU kernels of the native fused path (tvlars/optim/_native.py builds and loads them).
//
// One call updates every parameter of a param group: for each layer, one pass reads w and g
// for both norms (accumulated in double), one pass applies the trust ratio, momentum and
// update. Between the two passes much of a layer's w and g is still in the CPU's cache, so
// the second pass costs little more than reading the momentum buffer. One OpenMP parallel
// region covers the whole group, and the per-thread partial sums of a norm are added in
// thread order, so a step gives the same bits every time it is run with the same number of
// threads (a resumed run matches an uninterrupted one). The arithmetic is
// that of lars_adapted_tensor / lars_excluded_tensor (lars.py) and lamb_tensor (lamb.py),
// operation for operation, in the parameter's precision (float for bfloat16); the tests hold
// all paths to the same float64 reference. No torch headers: this compiles in about a second.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

struct bf16 {
  uint16_t bits;
};

template <typename T> struct Compute { using type = T; };
template <> struct Compute<bf16> { using type = float; };

inline float load(const float *p, int64_t i) { return p[i]; }
inline double load(const double *p, int64_t i) { return p[i]; }
inline float load(const bf16 *p, int64_t i) {
  uint32_t u = uint32_t(p[i].bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Rounding to bfloat16 without branches, in 32-bit lanes, so that the loops calling it
// vectorize (a branch for the NaN case made bfloat16 LARS steps 1.4x and LAMB steps 1.6x as
// long; a constant NaN in `rounded` made GCC's vector code four times slower again).
inline uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline bool is_nan_bits(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }
// The upper half of the float nearest to u that a bfloat16 holds, ties to even (not NaN).
inline uint32_t nearest_bfloat16_bits(uint32_t u) {
  return (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
}

inline void store(float *p, int64_t i, float x) { p[i] = x; }
inline void store(double *p, int64_t i, double x) { p[i] = x; }
inline void store(bf16 *p, int64_t i, float x) {
  // Every NaN becomes 0x7fc0, as in torch's conversion.
  const uint32_t u = float_bits(x);
  p[i].bits = uint16_t(is_nan_bits(u) ? 0x7fc0u : nearest_bfloat16_bits(u) >> 16);
}

// The value a store and a load give back: what the reference paths see in memory.
template <typename T, typename C> inline C rounded(C x) {
  T cell[1];
  store(cell, 0, x);
  return load(cell, 0);
}
template <> inline float rounded<bf16, float>(float x) {
  // As the general form, without the memory cell GCC kept in some loops; a NaN stays a
  // (quiet) NaN of its own sign and payload, which arithmetic treats alike and store makes
  // 0x7fc0 in the end.
  const uint32_t u = float_bits(x);
  const uint32_t r = is_nan_bits(u) ? (u | 0x400000u) & 0xffff0000u : nearest_bfloat16_bits(u);
  float f;
  std::memcpy(&f, &r, sizeof f);
  return f;
}

// Layers smaller than this are done whole by one thread (the threads take turns): splitting
// them would cost a barrier, which is worth more than their few microseconds of work.
constexpr int64_t kParallelMin = 1 << 15;
// Threads split a layer at multiples of 64 bytes (a cache line: torch's CPU allocator aligns
// tensors to it), so that no cache line is written by two threads.
constexpr int64_t kShareAlignBytes = 64;
// The second pass walks its share back to front in blocks of this many bytes of one tensor
// (front to back within a block, so it stays vectorized and prefetched): what the norm pass
// read last is what is most likely still in cache, and going backwards uses it before it is
// evicted. Going forwards would, for a layer larger than the cache, evict each line just
// before it is needed. Measured on ResNet-18 shapes (2 threads): 4-7% faster than forwards,
// with blocks from 64 KiB to 1 MiB alike.
constexpr int64_t kBlockBytes = 1 << 20;

inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// The contiguous share [begin, end) of [0, n) that thread `part` of `parts` takes, in both
// passes alike (so each thread's second pass finds its own lines in its own cache).
struct Share {
  int64_t begin, end;
};

template <typename T> inline Share share_of(int64_t n, int part, int parts) {
  constexpr int64_t align = kShareAlignBytes / int64_t(sizeof(T));
  const int64_t per = ((n + parts - 1) / parts + align - 1) / align * align;
  const int64_t begin = std::min(n, per * part);
  return {begin, std::min(n, begin + per)};
}

// Calls body(begin, end) over blocks of [share.begin, share.end), last block first.
template <typename T, typename Body> inline void backwards_by_block(Share share, Body body) {
  constexpr int64_t kBlock = kBlockBytes / int64_t(sizeof(T));
  for (int64_t end = share.end; end > share.begin;) {
    const int64_t begin = std::max(share.begin, end - kBlock);
    body(begin, end);
    end = begin;
  }
}

enum Momentum : int64_t { kNone = 0, kHeavyBall = 1, kNesterov = 2 };

// w <- w - lr*m after m <- mu*m + u (heavy ball), or Algorithm 1's Nesterov form where the
// buffer holds y_prev, or w <- w - lr*u without momentum. u = trust * d, with
// d = g + wd*w (Decay: adapted layers) or d = g (excluded; trust is then the excluded scale).
// Decay is a template argument, not a run-time flag: a choice inside the loop between two
// bfloat16 loads kept GCC from vectorizing the bfloat16 loops at all.
template <typename T, bool Decay>
void apply_update(T *w, const T *g, T *buffer, int64_t begin, int64_t end,
                  typename Compute<T>::type trust, typename Compute<T>::type wd,
                  typename Compute<T>::type lr, typename Compute<T>::type mu, int64_t momentum) {
  using C = typename Compute<T>::type;
  if (momentum == kHeavyBall) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const C wi = load(w, i);
      const C d = Decay ? rounded<T, C>(load(g, i) + rounded<T, C>(wd * wi)) : load(g, i);
      const C m = rounded<T, C>(rounded<T, C>(mu * load(buffer, i)) + rounded<T, C>(d * trust));
      store(buffer, i, m);
      store(w, i, wi - rounded<T, C>(lr * m));
    }
  } else if (momentum == kNesterov) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const C wi = load(w, i);
      const C d = Decay ? rounded<T, C>(load(g, i) + rounded<T, C>(wd * wi)) : load(g, i);
      const C y = rounded<T, C>(wi - rounded<T, C>(lr * rounded<T, C>(d * trust)));
      const C ahead = rounded<T, C>(mu * rounded<T, C>(y - load(buffer, i)));
      store(w, i, y + ahead);
      store(buffer, i, y);
    }
  } else {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const C wi = load(w, i);
      const C d = Decay ? rounded<T, C>(load(g, i) + rounded<T, C>(wd * wi)) : load(g, i);
      store(w, i, wi - rounded<T, C>(lr * rounded<T, C>(d * trust)));
    }
  }
}

// apply_update over a share, last block first (see backwards_by_block).
template <typename T, bool Decay>
void update_backwards(T *w, const T *g, T *buffer, Share share, typename Compute<T>::type trust,
                      typename Compute<T>::type wd, typename Compute<T>::type lr,
                      typename Compute<T>::type mu, int64_t momentum) {
  backwards_by_block<T>(share, [&](int64_t begin, int64_t end) {
    apply_update<T, Decay>(w, g, buffer, begin, end, trust, wd, lr, mu, momentum);
  });
}

// A weight and a direction element, squared in double: one term of a norm pass.
struct Squares {
  double weight, direction;
};

// sums[0], sums[1]: the sums over the share of squares(i).weight and .direction, in double.
// The share is walked as two halves side by side in one loop (the second half starts on a
// cache line), with a pair of sums per half: twice the memory streams and twice the
// independent additions of one walk. A single walk left the norm pass waiting on memory
// requests one core issues at a time, at about half the bandwidth of the update pass;
// two halves made LARS's norm pass plus update 1.40x the update alone instead of 1.55-1.60x
// on 2.36M-element layers (2 threads), 1.55x instead of 1.75x with one thread. Three or four
// streams were no faster. The order of the additions is fixed by the share, so the bits are
// the same on every run.
template <typename T, typename Term>
inline void square_sums(Share share, Term squares, double *sums) {
  constexpr int64_t line = kShareAlignBytes / int64_t(sizeof(T));
  const int64_t half = (share.end - share.begin) / 2 / line * line;
  const int64_t first = share.begin, second = share.begin + half;
  double weight_first = 0.0, direction_first = 0.0, weight_second = 0.0, direction_second = 0.0;
#pragma omp simd reduction(+ : weight_first, direction_first, weight_second, direction_second)
  for (int64_t j = 0; j < half; ++j) {
    const Squares a = squares(first + j), b = squares(second + j);
    weight_first += a.weight;
    direction_first += a.direction;
    weight_second += b.weight;
    direction_second += b.direction;
  }
  // The second half is the longer by the rounding of `half`.
#pragma omp simd reduction(+ : weight_second, direction_second)
  for (int64_t i = second + half; i < share.end; ++i) {
    const Squares b = squares(i);
    weight_second += b.weight;
    direction_second += b.direction;
  }
  sums[0] = weight_first + weight_second;
  sums[1] = direction_first + direction_second;
}

// Sums of squares of w and of d = g + wd*w over the share, in double.
template <typename T>
void lars_square_sums(const T *w, const T *g, Share share, typename Compute<T>::type wd,
                      double *sums) {
  using C = typename Compute<T>::type;
  square_sums<T>(share, [=](int64_t i) {
    const C wi = load(w, i);
    const C d = rounded<T, C>(load(g, i) + rounded<T, C>(wd * wi));
    return Squares{double(wi) * double(wi), double(d) * double(d)};
  }, sums);
}

// Scratch for the per-thread partial sums: one row per layer, so that no thread overwrites
// a row another thread has yet to read (saves a second barrier per layer).
struct Partials {
  explicit Partials(int64_t layers, int64_t threads)
      : stride(2 * threads), data(new double[size_t(layers * stride)]) {}
  ~Partials() { delete[] data; }
  Partials(const Partials &) = delete;
  Partials &operator=(const Partials &) = delete;
  double *row(int64_t layer) { return data + layer * stride; }
  int64_t stride;
  double *data;
};

// What one thread does of one layer.
struct Work {
  int64_t layer;
  Share share;
  bool split;         // the layer is shared between all threads (else this thread does it all)
  int part, parts;    // this thread's index, the team's size
  int64_t stats_row;  // the layer's row of stats if it is adapted
};

// Runs body(work) for every layer this thread takes part in, inside one parallel region for
// the whole group. A layer of at least kParallelMin elements is split into one share per
// thread; smaller layers go whole to one thread each, in turn, with no barrier. The body of
// a split, adapted layer must call layer_square_sums (which holds a barrier) on every thread.
template <typename T, typename Body>
void for_each_share(int64_t layers, const int64_t *numels, const uint8_t *adapted,
                    int64_t threads, Body body) {
#pragma omp parallel num_threads(int(threads))
  {
    const int part = thread_index(), parts = team_size();
    int64_t small_layers = 0, stats_row = -1;
    for (int64_t k = 0; k < layers; ++k) {
      const int64_t n = numels[k];
      const bool split = n >= kParallelMin && parts > 1;
      stats_row += adapted[k] ? 1 : 0;
      if (!split && small_layers++ % parts != part) continue;  // another thread's turn
      body(Work{k, split ? share_of<T>(n, part, parts) : Share{0, n}, split, part, parts, stats_row});
    }
  }
}

// A layer's square sums from this thread's share's sums: the same total on every thread,
// and in every run with the same thread count, as the partial sums are added in thread
// order (not in the order threads finish, as an OpenMP reduction may).
inline void layer_square_sums(Partials &partials, const Work &work, const double *share_sums,
                              double *sums) {
  if (!work.split) {
    sums[0] = share_sums[0];
    sums[1] = share_sums[1];
    return;
  }
  double *row = partials.row(work.layer);
  row[2 * work.part] = share_sums[0];
  row[2 * work.part + 1] = share_sums[1];
#pragma omp barrier
  sums[0] = sums[1] = 0.0;
  for (int part = 0; part < work.parts; ++part) {
    sums[0] += row[2 * part];
    sums[1] += row[2 * part + 1];
  }
}

// Writes a layer's |w|, direction norm and trust ratio (once, by one thread).
template <typename C>
inline void write_stats(const Work &work, C weight_norm, C direction_norm, C trust,
                        double *stats) {
  if (work.split && work.part != 0) return;
  stats[3 * work.stats_row] = weight_norm;
  stats[3 * work.stats_row + 1] = direction_norm;
  stats[3 * work.stats_row + 2] = trust;
}

// LARC's clip of a trust ratio at the LR (trust_clip): min(trust / lr, 1), and 1 where
// lr = 0. A NaN ratio stays NaN, as torch's clamp leaves it.
template <typename C> inline C clip_to_lr(C trust, C lr) {
  if (!(lr > 0)) return C(1);
  const C ratio = C(trust / lr);
  return ratio > C(1) ? C(1) : ratio;
}

// values: lr, eta*scale, momentum, weight decay, excluded scale, norm clamp (NaN: none),
// trust clip (0 or 1).
// stats: one row |w|, |g + wd*w|, trust per adapted layer, in layer order (excluded layers
// have none, so telemetry takes the rows as they are).
template <typename T>
void lars_step(int64_t layers, void *const *weights, void *const *grads, void *const *buffers,
               const int64_t *numels, const uint8_t *adapted, const double *values,
               int64_t momentum, int64_t threads, double *stats) {
  using C = typename Compute<T>::type;
  const C lr = C(values[0]), coefficient = C(values[1]), mu = C(values[2]);
  const C wd = C(values[3]), excluded_scale = C(values[4]);
  const double clamp = values[5];
  const bool trust_clip = values[6] != 0.0;
  Partials partials(layers, threads);

  for_each_share<T>(layers, numels, adapted, threads, [&](const Work &work) {
    T *w = static_cast<T *>(weights[work.layer]);
    const T *g = static_cast<const T *>(grads[work.layer]);
    T *buffer = static_cast<T *>(buffers[work.layer]);
    if (!adapted[work.layer]) {
      update_backwards<T, false>(w, g, buffer, work.share, excluded_scale, wd, lr, mu, momentum);
      return;
    }
    double share_sums[2], sums[2];
    lars_square_sums(w, g, work.share, wd, share_sums);
    layer_square_sums(partials, work, share_sums, sums);
    // Norms and ratio in the parameter's precision (float for bfloat16), as the reference
    // paths compute them.
    const C weight_norm = C(std::sqrt(sums[0])), direction_norm = C(std::sqrt(sums[1]));
    C w_used = weight_norm, d_used = direction_norm;
    if (!std::isnan(clamp)) {
      w_used = std::fmin(w_used, C(clamp));
      d_used = std::fmin(d_used, C(clamp));
    }
    C trust = (w_used > 0 && d_used > 0) ? C(C(coefficient * w_used) / d_used) : C(1);
    if (trust_clip) trust = clip_to_lr(trust, lr);
    write_stats(work, weight_norm, direction_norm, trust, stats);
    update_backwards<T, true>(w, g, buffer, work.share, trust, wd, lr, mu, momentum);
  });
}

// lars_step's update pass alone, with each adapted layer's trust ratio given (trusts: one
// per adapted layer, in layer order): for layers sharded across processes, whose norms are
// the sums of every process's norms_step (see tvlars/optim/_sharded.py).
template <typename T>
void lars_apply_step(int64_t layers, void *const *weights, void *const *grads,
                     void *const *buffers, const int64_t *numels, const uint8_t *adapted,
                     const double *values, const double *trusts, int64_t momentum,
                     int64_t threads) {
  using C = typename Compute<T>::type;
  const C lr = C(values[0]), mu = C(values[2]), wd = C(values[3]), excluded_scale = C(values[4]);

  for_each_share<T>(layers, numels, adapted, threads, [&](const Work &work) {
    T *w = static_cast<T *>(weights[work.layer]);
    const T *g = static_cast<const T *>(grads[work.layer]);
    T *buffer = static_cast<T *>(buffers[work.layer]);
    if (!adapted[work.layer]) {
      update_backwards<T, false>(w, g, buffer, work.share, excluded_scale, wd, lr, mu, momentum);
      return;
    }
    update_backwards<T, true>(w, g, buffer, work.share, C(trusts[work.stats_row]), wd, lr, mu,
                              momentum);
  });
}

// |w| and |g + wd*w| of every layer, in double, changing nothing: lars_step's norm pass
// alone, for telemetry of optimizers that compute no norms themselves. norms: one row
// (|w|, |g + wd*w|) per layer.
template <typename T>
void norms_step(int64_t layers, void *const *weights, void *const *grads, const int64_t *numels,
                double weight_decay, int64_t threads, double *norms) {
  using C = typename Compute<T>::type;
  const C wd = C(weight_decay);
  const std::vector<uint8_t> every_layer(size_t(layers), 1);
  Partials partials(layers, threads);

  for_each_share<T>(layers, numels, every_layer.data(), threads, [&](const Work &work) {
    const T *w = static_cast<const T *>(weights[work.layer]);
    const T *g = static_cast<const T *>(grads[work.layer]);
    double share_sums[2], sums[2];
    lars_square_sums(w, g, work.share, wd, share_sums);
    layer_square_sums(partials, work, share_sums, sums);
    if (work.split && work.part != 0) return;
    norms[2 * work.layer] = std::sqrt(sums[0]);
    norms[2 * work.layer + 1] = std::sqrt(sums[1]);
  });
}

// LAMB's per-step constants. Passed by value into the loops below: copies the compiler
// knows no store can alias, which keeps the loops vectorized.
// grad_scale: 1 / max(G / max_grad_norm, 1) of LAMB's global gradient clipping, read only by
// the Clip instantiations of the loops below (the others leave g as it is).
template <typename C> struct LambValues {
  C lr, bias_correction1, bias_correction2, beta1, beta2, one_minus_beta1, one_minus_beta2;
  C eps, wd, grad_scale;
};

// values: lr, 1 - beta1^s, 1 - beta2^s, beta1, beta2, eps, weight decay.
template <typename C> LambValues<C> lamb_values(const double *values, double grad_scale) {
  return {C(values[0]),        C(values[1]),        C(values[2]), C(values[3]),
          C(values[4]),        C(1.0 - values[3]),  C(1.0 - values[4]),
          C(values[5]),        C(values[6]),        C(grad_scale)};
}

// Adam's direction mh / (sqrt(vh) + eps) from the moments as stored, so that both passes of
// lamb_step see the same values.
template <typename T, typename C>
inline C adam_direction(const T *m, const T *v, int64_t i, const LambValues<C> &h) {
  const C mh = rounded<T, C>(load(m, i) / h.bias_correction1);
  const C vh = rounded<T, C>(std::sqrt(rounded<T, C>(load(v, i) / h.bias_correction2)));
  return rounded<T, C>(mh / rounded<T, C>(vh + h.eps));
}

// m <- beta1*m + (1 - beta1)*g and v <- beta2*v + (1 - beta2)*g*g, in place; with Clip,
// g is first multiplied by the global clip's scale (rounded as the tensor g * scale is).
// Clip is a template argument, not a run-time flag, for the reason apply_update's Decay is.
template <typename T, bool Clip, typename C>
inline void update_moments(const T *g, T *m, T *v, int64_t i, const LambValues<C> &h) {
  const C gi = Clip ? rounded<T, C>(load(g, i) * h.grad_scale) : load(g, i);
  store(m, i, rounded<T, C>(h.beta1 * load(m, i)) + rounded<T, C>(h.one_minus_beta1 * gi));
  const C g2 = rounded<T, C>(rounded<T, C>(h.one_minus_beta2 * gi) * gi);
  store(v, i, rounded<T, C>(h.beta2 * load(v, i)) + g2);
}

// An excluded layer in one pass: moments, then w <- w - lr * Adam direction.
template <typename T, bool Clip, typename C>
void lamb_excluded(T *w, const T *g, T *m, T *v, Share share, LambValues<C> h) {
#pragma omp simd
  for (int64_t i = share.begin; i < share.end; ++i) {
    update_moments<T, Clip>(g, m, v, i, h);
    store(w, i, load(w, i) - rounded<T, C>(h.lr * adam_direction(m, v, i, h)));
  }
}

// An adapted layer's first pass: moments, and the square sums of w and of the direction
// u = Adam direction + wd*w.
template <typename T, bool Clip, typename C>
void lamb_moments_and_square_sums(const T *w, const T *g, T *m, T *v, Share share,
                                  LambValues<C> h, double *sums) {
  // One walk: this pass is bound by its divisions and square roots more than by memory,
  // and two halves measured no faster (0.91-1.07x).
  double weight_sq = 0.0, direction_sq = 0.0;
#pragma omp simd reduction(+ : weight_sq, direction_sq)
  for (int64_t i = share.begin; i < share.end; ++i) {
    update_moments<T, Clip>(g, m, v, i, h);
    const C wi = load(w, i);
    const C u = rounded<T, C>(adam_direction(m, v, i, h) + rounded<T, C>(h.wd * wi));
    weight_sq += double(wi) * double(wi);
    direction_sq += double(u) * double(u);
  }
  sums[0] = weight_sq;
  sums[1] = direction_sq;
}

// An adapted layer's second pass: w <- w - step*u over [begin, end).
template <typename T, typename C>
void lamb_apply(T *w, const T *m, const T *v, int64_t begin, int64_t end, C step,
                LambValues<C> h) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const C wi = load(w, i);
    const C u = rounded<T, C>(adam_direction(m, v, i, h) + rounded<T, C>(h.wd * wi));
    store(w, i, wi - rounded<T, C>(step * u));
  }
}

// The first pass of a LAMB step over one thread's work: an excluded layer updated whole
// (returns false); an adapted layer's moments updated and its layer's sums of squares of w
// and u in sums (returns true; on every thread of a split layer).
template <typename T, bool Clip, typename C>
bool lamb_first_pass(const Work &work, void *const *weights, void *const *grads,
                     void *const *exp_avgs, void *const *exp_avg_sqs, const uint8_t *adapted,
                     const LambValues<C> &h, Partials &partials, double *sums) {
  T *w = static_cast<T *>(weights[work.layer]);
  const T *g = static_cast<const T *>(grads[work.layer]);
  T *m = static_cast<T *>(exp_avgs[work.layer]);
  T *v = static_cast<T *>(exp_avg_sqs[work.layer]);
  if (!adapted[work.layer]) {
    lamb_excluded<T, Clip>(w, g, m, v, work.share, h);
    return false;
  }
  double share_sums[2];
  lamb_moments_and_square_sums<T, Clip>(w, g, m, v, work.share, h, share_sums);
  layer_square_sums(partials, work, share_sums, sums);
  return true;
}

// values: lr, 1 - beta1^s, 1 - beta2^s, beta1, beta2, eps, weight decay, clamp low, clamp
// high (NaN: no clamp). stats as in lars_step, with |u| for the direction norm. Threads
// share the work as in lars_step. Clip: g multiplied by grad_scale (see update_moments).
template <typename T, bool Clip>
void lamb_step(int64_t layers, void *const *weights, void *const *grads, void *const *exp_avgs,
               void *const *exp_avg_sqs, const int64_t *numels, const uint8_t *adapted,
               const double *values, double grad_scale, int64_t threads, double *stats) {
  using C = typename Compute<T>::type;
  const LambValues<C> h = lamb_values<C>(values, grad_scale);
  const double clamp_low = values[7], clamp_high = values[8];
  Partials partials(layers, threads);

  for_each_share<T>(layers, numels, adapted, threads, [&](const Work &work) {
    double sums[2];
    if (!lamb_first_pass<T, Clip>(work, weights, grads, exp_avgs, exp_avg_sqs, adapted, h, partials,
                            sums))
      return;
    T *w = static_cast<T *>(weights[work.layer]);
    const T *m = static_cast<const T *>(exp_avgs[work.layer]);
    const T *v = static_cast<const T *>(exp_avg_sqs[work.layer]);
    const C weight_norm = C(std::sqrt(sums[0])), direction_norm = C(std::sqrt(sums[1]));
    C r = weight_norm;
    if (!std::isnan(clamp_high)) r = std::fmin(std::fmax(r, C(clamp_low)), C(clamp_high));
    const C trust = (r > 0 && direction_norm > 0) ? C(r / direction_norm) : C(1);
    write_stats(work, weight_norm, direction_norm, trust, stats);
    const C step = h.lr * trust;
    backwards_by_block<T>(work.share, [&](int64_t begin, int64_t end) {
      lamb_apply(w, m, v, begin, end, step, h);
    });
  });
}

// lamb_step's first pass alone: every excluded layer updated whole; the moments of every
// adapted layer updated and its sums of squares of w and u written to sums (one row per
// adapted layer, in layer order), w left as it is. For layers sharded across processes.
template <typename T, bool Clip>
void lamb_moments_step(int64_t layers, void *const *weights, void *const *grads,
                       void *const *exp_avgs, void *const *exp_avg_sqs, const int64_t *numels,
                       const uint8_t *adapted, const double *values, double grad_scale,
                       int64_t threads, double *sums) {
  using C = typename Compute<T>::type;
  const LambValues<C> h = lamb_values<C>(values, grad_scale);
  Partials partials(layers, threads);

  for_each_share<T>(layers, numels, adapted, threads, [&](const Work &work) {
    double layer_sums[2];
    if (!lamb_first_pass<T, Clip>(work, weights, grads, exp_avgs, exp_avg_sqs, adapted, h, partials,
                            layer_sums))
      return;
    if (work.split && work.part != 0) return;
    sums[2 * work.stats_row] = layer_sums[0];
    sums[2 * work.stats_row + 1] = layer_sums[1];
  });
}

// lamb_step's second pass alone, with each adapted layer's trust ratio given (one per
// adapted layer, in layer order); excluded layers are left alone (lamb_moments_step
// updated them).
template <typename T>
void lamb_apply_step(int64_t layers, void *const *weights, void *const *exp_avgs,
                     void *const *exp_avg_sqs, const int64_t *numels, const uint8_t *adapted,
                     const double *values, const double *trusts, int64_t threads) {
  using C = typename Compute<T>::type;
  const LambValues<C> h = lamb_values<C>(values, 1.0);

  for_each_share<T>(layers, numels, adapted, threads, [&](const Work &work) {
    if (!adapted[work.layer]) return;
    T *w = static_cast<T *>(weights[work.layer]);
    const T *m = static_cast<const T *>(exp_avgs[work.layer]);
    const T *v = static_cast<const T *>(exp_avg_sqs[work.layer]);
    const C step = h.lr * C(trusts[work.stats_row]);
    backwards_by_block<T>(work.share, [&](int64_t begin, int64_t end) {
      lamb_apply(w, m, v, begin, end, step, h);
    });
  });
}

// The global clip's scale as the kernels take it: grad_scale (a float64 on the host, or
// null for no clipping), and whether multiplying by it changes anything (a scale of 1
// leaves every g as it is, so the loops without the multiplication give the same bits).
inline bool scales(const double *grad_scale) {
  return grad_scale != nullptr && *grad_scale != 1.0;
}

}  // namespace

#define TVLARS_EXPORT(SUFFIX, T)                                                                  \
  extern "C" void tvlars_lars_##SUFFIX(int64_t layers, void *const *weights, void *const *grads,  \
                                       void *const *buffers, const int64_t *numels,               \
                                       const uint8_t *adapted, const double *values,              \
                                       int64_t momentum, int64_t threads, double *stats) {        \
    lars_step<T>(layers, weights, grads, buffers, numels, adapted, values, momentum, threads,     \
                 stats);                                                                          \
  }                                                                                               \
  extern "C" void tvlars_lamb_##SUFFIX(int64_t layers, void *const *weights, void *const *grads,  \
                                       void *const *exp_avgs, void *const *exp_avg_sqs,           \
                                       const int64_t *numels, const uint8_t *adapted,             \
                                       const double *values, int64_t threads, double *stats,      \
                                       const double *grad_scale) {                                \
    if (scales(grad_scale))                                                                       \
      lamb_step<T, true>(layers, weights, grads, exp_avgs, exp_avg_sqs, numels, adapted, values,  \
                         *grad_scale, threads, stats);                                            \
    else                                                                                          \
      lamb_step<T, false>(layers, weights, grads, exp_avgs, exp_avg_sqs, numels, adapted, values, \
                          1.0, threads, stats);                                                   \
  }                                                                                               \
  extern "C" void tvlars_norms_##SUFFIX(int64_t layers, void *const *weights, void *const *grads, \
                                        const int64_t *numels, double weight_decay,               \
                                        int64_t threads, double *norms) {                         \
    norms_step<T>(layers, weights, grads, numels, weight_decay, threads, norms);                  \
  }                                                                                               \
  extern "C" void tvlars_lars_apply_##SUFFIX(                                                     \
      int64_t layers, void *const *weights, void *const *grads, void *const *buffers,             \
      const int64_t *numels, const uint8_t *adapted, const double *values, const double *trusts,  \
      int64_t momentum, int64_t threads) {                                                        \
    lars_apply_step<T>(layers, weights, grads, buffers, numels, adapted, values, trusts,          \
                       momentum, threads);                                                        \
  }                                                                                               \
  extern "C" void tvlars_lamb_moments_##SUFFIX(                                                   \
      int64_t layers, void *const *weights, void *const *grads, void *const *exp_avgs,            \
      void *const *exp_avg_sqs, const int64_t *numels, const uint8_t *adapted,                    \
      const double *values, int64_t threads, double *sums, const double *grad_scale) {            \
    if (scales(grad_scale))                                                                       \
      lamb_moments_step<T, true>(layers, weights, grads, exp_avgs, exp_avg_sqs, numels, adapted,  \
                                 values, *grad_scale, threads, sums);                             \
    else                                                                                          \
      lamb_moments_step<T, false>(layers, weights, grads, exp_avgs, exp_avg_sqs, numels, adapted, \
                                  values, 1.0, threads, sums);                                    \
  }                                                                                               \
  extern "C" void tvlars_lamb_apply_##SUFFIX(                                                     \
      int64_t layers, void *const *weights, void *const *exp_avgs, void *const *exp_avg_sqs,      \
      const int64_t *numels, const uint8_t *adapted, const double *values, const double *trusts,  \
      int64_t threads) {                                                                          \
    lamb_apply_step<T>(layers, weights, exp_avgs, exp_avg_sqs, numels, adapted, values, trusts,   \
                       threads);                                                                  \
  }

TVLARS_EXPORT(float32, float)
TVLARS_EXPORT(float64, double)
TVLARS_EXPORT(bfloat16, bf16)
