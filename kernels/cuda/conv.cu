// im2col / col2im for NCHW convolution (scratchgen.kernels.cuda).
//
// Self-contained: no #include, so the same text compiles with nvcc (CI check,
// tools/check_cuda_sources.sh) and with NVRTC through cupy.RawModule at run time.
// Every kernel is a grid-stride loop; all sizes and indices are 64-bit.
//
// Index map (the same as kernels/reference.py), with Ho = (H + 2*ph - kh)/sh + 1:
//
//   row r = (c*kh + p)*kw + q   (matches w.reshape(O, C*kh*kw))
//   col l = i*Wo + j
//   cols[r, l] = x[n, c, i*sh - ph + p, j*sw - pw + q]   (0 outside the input)
//
// Two layouts of cols:
//   batch_major != 0:  cols is (N, R, L)     -> y = w.reshape(O, R) @ cols  (batched GEMM)
//   batch_major == 0:  cols is (R, N*L)      -> gw = gy_t (O, N*L) @ cols.T (one GEMM)
//
// col2im is a gather: one thread per input pixel (n, c, h, w) sums, in a fixed
// order, every cols entry whose window covers it. No atomics, so the result is
// deterministic; pixels that no window covers get 0.

typedef long long sg_i64;

template <typename T>
__device__ __forceinline__ void sg_im2col(const T* __restrict__ x, T* __restrict__ cols,
                                          sg_i64 N, sg_i64 C, sg_i64 H, sg_i64 W,
                                          sg_i64 kh, sg_i64 kw, sg_i64 sh, sg_i64 sw,
                                          sg_i64 ph, sg_i64 pw, sg_i64 Ho, sg_i64 Wo,
                                          int batch_major)
{
    const sg_i64 L = Ho * Wo;
    const sg_i64 R = C * kh * kw;
    const sg_i64 total = N * R * L;
    const sg_i64 step = (sg_i64)blockDim.x * (sg_i64)gridDim.x;
    for (sg_i64 idx = (sg_i64)blockIdx.x * (sg_i64)blockDim.x + (sg_i64)threadIdx.x;
         idx < total; idx += step) {
        // idx = ((n*R + r)*L + l),  r = (c*kh + p)*kw + q,  l = i*Wo + j
        sg_i64 t = idx;
        const sg_i64 j = t % Wo; t /= Wo;
        const sg_i64 i = t % Ho; t /= Ho;
        const sg_i64 q = t % kw; t /= kw;
        const sg_i64 p = t % kh; t /= kh;
        const sg_i64 c = t % C;
        const sg_i64 n = t / C;
        const sg_i64 ih = i * sh - ph + p;
        const sg_i64 iw = j * sw - pw + q;
        T v = T(0);
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
            v = x[((n * C + c) * H + ih) * W + iw];
        }
        if (batch_major) {
            cols[idx] = v;
        } else {
            const sg_i64 r = (c * kh + p) * kw + q;
            const sg_i64 l = i * Wo + j;
            cols[r * (N * L) + n * L + l] = v;
        }
    }
}

template <typename T>
__device__ __forceinline__ void sg_col2im(const T* __restrict__ cols, T* __restrict__ gx,
                                          sg_i64 N, sg_i64 C, sg_i64 H, sg_i64 W,
                                          sg_i64 kh, sg_i64 kw, sg_i64 sh, sg_i64 sw,
                                          sg_i64 ph, sg_i64 pw, sg_i64 Ho, sg_i64 Wo,
                                          int batch_major)
{
    const sg_i64 L = Ho * Wo;
    const sg_i64 R = C * kh * kw;
    const sg_i64 total = N * C * H * W;
    const sg_i64 step = (sg_i64)blockDim.x * (sg_i64)gridDim.x;
    for (sg_i64 idx = (sg_i64)blockIdx.x * (sg_i64)blockDim.x + (sg_i64)threadIdx.x;
         idx < total; idx += step) {
        sg_i64 t = idx;
        const sg_i64 w = t % W; t /= W;
        const sg_i64 h = t % H; t /= H;
        const sg_i64 c = t % C;
        const sg_i64 n = t / C;
        // Padded coordinates of this pixel; window i covers rows [i*sh, i*sh + kh - 1].
        const sg_i64 hp = h + ph;
        const sg_i64 wp = w + pw;
        // i*sh + kh - 1 >= hp  <=>  i >= ceil((hp - kh + 1)/sh);  i*sh <= hp  <=>  i <= hp/sh
        const sg_i64 i_lo = (hp >= kh) ? (hp - kh) / sh + 1 : 0;
        const sg_i64 j_lo = (wp >= kw) ? (wp - kw) / sw + 1 : 0;
        sg_i64 i_hi = hp / sh;
        sg_i64 j_hi = wp / sw;
        if (i_hi > Ho - 1) i_hi = Ho - 1;
        if (j_hi > Wo - 1) j_hi = Wo - 1;
        const sg_i64 base = batch_major ? n * R * L : n * L;
        const sg_i64 rstride = batch_major ? L : N * L;
        T acc = T(0);
        for (sg_i64 i = i_lo; i <= i_hi; ++i) {
            const sg_i64 p = hp - i * sh;  // 0 <= p < kh
            for (sg_i64 j = j_lo; j <= j_hi; ++j) {
                const sg_i64 q = wp - j * sw;  // 0 <= q < kw
                const sg_i64 r = (c * kh + p) * kw + q;
                acc += cols[base + r * rstride + i * Wo + j];
            }
        }
        gx[idx] = acc;
    }
}

#define SG_CONV_INSTANTIATE(T, SUFFIX)                                                      \
    extern "C" __global__ void im2col_##SUFFIX(                                             \
        const T* __restrict__ x, T* __restrict__ cols, sg_i64 N, sg_i64 C, sg_i64 H,        \
        sg_i64 W, sg_i64 kh, sg_i64 kw, sg_i64 sh, sg_i64 sw, sg_i64 ph, sg_i64 pw,         \
        sg_i64 Ho, sg_i64 Wo, int batch_major)                                              \
    {                                                                                       \
        sg_im2col<T>(x, cols, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, batch_major);     \
    }                                                                                       \
    extern "C" __global__ void col2im_##SUFFIX(                                             \
        const T* __restrict__ cols, T* __restrict__ gx, sg_i64 N, sg_i64 C, sg_i64 H,       \
        sg_i64 W, sg_i64 kh, sg_i64 kw, sg_i64 sh, sg_i64 sw, sg_i64 ph, sg_i64 pw,         \
        sg_i64 Ho, sg_i64 Wo, int batch_major)                                              \
    {                                                                                       \
        sg_col2im<T>(cols, gx, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, batch_major);    \
    }

SG_CONV_INSTANTIATE(float, f32)
SG_CONV_INSTANTIATE(double, f64)

#undef SG_CONV_INSTANTIATE
