// im2col / col2im for NCHW convolution (scratchgen.kernels.cuda).
//
// Self-contained: no #include, so the same text compiles with nvcc (CI check,
// tools/check_cuda_sources.sh) and with NVRTC through cupy.RawModule at run time.
// Every kernel is a grid-stride loop over a flat index of integer type I: sg_i64 in the
// im2col/col2im kernels, int in im2col32/col2im32 (the host picks those when every index,
// plus one grid stride, fits in 31 bits: 32-bit div/rem are several times cheaper).
//
// Index map (the same as kernels/reference.py), with Ho = (H + 2*ph - kh)/sh + 1:
//
//   row r = (c*kh + p)*kw + q   (matches w.reshape(O, C*kh*kw))
//   col l = i*Wo + j
//   cols[r, n*L + l] = x[n, c, i*sh - ph + p, j*sw - pw + q]   (0 outside the input)
//
// cols is (R, N*L): every conv GEMM is then one 2-D GEMM over the whole batch
//   y  = w.reshape(O, R) @ cols          (O, N*L)
//   gw = gy_t (O, N*L) @ cols.T          (O, R)
//   cols = w.reshape(O, R).T @ gy_t      (R, N*L)  -> col2im -> gx
//
// col2im is a gather: one thread per input pixel (n, c, h, w) sums, in a fixed
// order, every cols entry whose window covers it. No atomics, so the result is
// deterministic; pixels that no window covers get 0.

typedef long long sg_i64;

template <typename T, typename I>
__device__ __forceinline__ void sg_im2col(const T* __restrict__ x, T* __restrict__ cols,
                                          I N, I C, I H, I W, I kh, I kw, I sh, I sw,
                                          I ph, I pw, I Ho, I Wo)
{
    const I L = Ho * Wo;
    const I total = N * C * kh * kw * L;
    const I step = (I)blockDim.x * (I)gridDim.x;
    for (I idx = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; idx < total; idx += step) {
        // idx = (r*N + n)*L + l,  r = (c*kh + p)*kw + q,  l = i*Wo + j
        I t = idx;
        const I j = t % Wo; t /= Wo;
        const I i = t % Ho; t /= Ho;
        const I n = t % N; t /= N;
        const I q = t % kw; t /= kw;
        const I p = t % kh;
        const I c = t / kh;
        const I ih = i * sh - ph + p;
        const I iw = j * sw - pw + q;
        T v = T(0);
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
            v = x[((n * C + c) * H + ih) * W + iw];
        }
        cols[idx] = v;
    }
}

template <typename T, typename I>
__device__ __forceinline__ void sg_col2im(const T* __restrict__ cols, T* __restrict__ gx,
                                          I N, I C, I H, I W, I kh, I kw, I sh, I sw,
                                          I ph, I pw, I Ho, I Wo)
{
    const I L = Ho * Wo;
    const I rstride = N * L;
    const I total = N * C * H * W;
    const I step = (I)blockDim.x * (I)gridDim.x;
    for (I idx = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; idx < total; idx += step) {
        I t = idx;
        const I w = t % W; t /= W;
        const I h = t % H; t /= H;
        const I c = t % C;
        const I n = t / C;
        // Padded coordinates of this pixel; window i covers rows [i*sh, i*sh + kh - 1].
        const I hp = h + ph;
        const I wp = w + pw;
        // i*sh + kh - 1 >= hp  <=>  i >= ceil((hp - kh + 1)/sh);  i*sh <= hp  <=>  i <= hp/sh
        const I i_lo = (hp >= kh) ? (hp - kh) / sh + 1 : 0;
        const I j_lo = (wp >= kw) ? (wp - kw) / sw + 1 : 0;
        I i_hi = hp / sh;
        I j_hi = wp / sw;
        if (i_hi > Ho - 1) i_hi = Ho - 1;
        if (j_hi > Wo - 1) j_hi = Wo - 1;
        const I base = n * L;
        T acc = T(0);
        for (I i = i_lo; i <= i_hi; ++i) {
            const I p = hp - i * sh;  // 0 <= p < kh
            for (I j = j_lo; j <= j_hi; ++j) {
                const I q = wp - j * sw;  // 0 <= q < kw
                const I r = (c * kh + p) * kw + q;
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
        sg_i64 Ho, sg_i64 Wo)                                                               \
    {                                                                                       \
        sg_im2col<T, sg_i64>(x, cols, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo);          \
    }                                                                                       \
    extern "C" __global__ void col2im_##SUFFIX(                                             \
        const T* __restrict__ cols, T* __restrict__ gx, sg_i64 N, sg_i64 C, sg_i64 H,       \
        sg_i64 W, sg_i64 kh, sg_i64 kw, sg_i64 sh, sg_i64 sw, sg_i64 ph, sg_i64 pw,         \
        sg_i64 Ho, sg_i64 Wo)                                                               \
    {                                                                                       \
        sg_col2im<T, sg_i64>(cols, gx, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo);         \
    }                                                                                       \
    extern "C" __global__ void im2col32_##SUFFIX(                                           \
        const T* __restrict__ x, T* __restrict__ cols, int N, int C, int H, int W, int kh,  \
        int kw, int sh, int sw, int ph, int pw, int Ho, int Wo)                             \
    {                                                                                       \
        sg_im2col<T, int>(x, cols, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo);             \
    }                                                                                       \
    extern "C" __global__ void col2im32_##SUFFIX(                                           \
        const T* __restrict__ cols, T* __restrict__ gx, int N, int C, int H, int W, int kh, \
        int kw, int sh, int sw, int ph, int pw, int Ho, int Wo)                             \
    {                                                                                       \
        sg_col2im<T, int>(cols, gx, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo);            \
    }

SG_CONV_INSTANTIATE(float, f32)
SG_CONV_INSTANTIATE(double, f64)

#undef SG_CONV_INSTANTIATE
