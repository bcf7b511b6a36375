// Fused Adam / AdamW-style update (scratchgen.kernels.cuda.adam_update): one pass over the
// flat arrays instead of ~10 elementwise kernels and 2 temporaries per parameter.
//
// Self-contained (no #include): compiles with nvcc and with NVRTC via cupy.RawModule.
// The same operations in the same order as kernels/cpu/optim.py and kernels/reference.py,
// in T, with the scalars already rounded to T by the host:
//
//   g' = decay ? p*wd + g : g;   m = m*b1 + c1*g';   v = v*b2 + (g'*g')*c2;
//   amsgrad: vmax = max(vmax, v) (NaN propagates), used for v below;
//   p -= (m / (sqrt(v)*inv_sb2 + eps)) * step
//
// with c1 = 1 - b1, c2 = 1 - b2, inv_sb2 = 1/sqrt(1 - b2^t), step = lr/(1 - b1^t).
// vmax may alias v when amsgrad is 0 (it is then never read), hence no __restrict__ on it.

typedef long long sg_i64;

__device__ __forceinline__ float sg_sqrt(float v) { return sqrtf(v); }
__device__ __forceinline__ double sg_sqrt(double v) { return sqrt(v); }

template <typename T>
__device__ __forceinline__ void sg_adam(T* __restrict__ p, const T* __restrict__ g,
                                        T* __restrict__ m, T* __restrict__ v, T* vmax,
                                        sg_i64 n, int amsgrad, int decay, T b1, T c1, T b2,
                                        T c2, T inv_sb2, T eps, T step, T wd)
{
    const sg_i64 stride = (sg_i64)blockDim.x * (sg_i64)gridDim.x;
    for (sg_i64 i = (sg_i64)blockIdx.x * (sg_i64)blockDim.x + (sg_i64)threadIdx.x; i < n;
         i += stride) {
        T gi = g[i];
        if (decay) {
            gi = p[i] * wd + gi;
        }
        const T mi = m[i] * b1 + c1 * gi;
        m[i] = mi;
        T vi = v[i] * b2 + (gi * gi) * c2;
        v[i] = vi;
        if (amsgrad) {
            T vm = vmax[i];
            if (!(vi <= vm)) {
                vm = vi;
            }
            vmax[i] = vm;
            vi = vm;
        }
        const T denom = sg_sqrt(vi) * inv_sb2 + eps;
        p[i] -= (mi / denom) * step;
    }
}

#define SG_OPTIM_INSTANTIATE(T, SUFFIX)                                                     \
    extern "C" __global__ void adam_##SUFFIX(                                               \
        T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,   \
        T* vmax, sg_i64 n, int amsgrad, int decay, T b1, T c1, T b2, T c2, T inv_sb2,       \
        T eps, T step, T wd)                                                                \
    {                                                                                       \
        sg_adam<T>(p, g, m, v, vmax, n, amsgrad, decay, b1, c1, b2, c2, inv_sb2, eps, step, \
                   wd);                                                                     \
    }

SG_OPTIM_INSTANTIATE(float, f32)
SG_OPTIM_INSTANTIATE(double, f64)

#undef SG_OPTIM_INSTANTIATE
