// Fused bias + activation and its backward (scratchgen.kernels.cuda).
//
// Self-contained (no #include): compiles with nvcc and with NVRTC via cupy.RawModule.
//
// bias_act:       out[idx] = act(y[idx] + b[(idx / inner) % C])
//                 y is (N, C, *spatial) or (N, F) contiguous; inner = prod(spatial) (1 for 2-D).
// bias_act_grad:  gin = gout * act'(pre), computed from the activation's OUTPUT:
//                 relu: out > 0;  leaky_relu: out > 0 ? 1 : slope;  tanh: 1 - out^2;
//                 sigmoid: out * (1 - out);  none: 1.
//
// act codes (must match kernels/cuda/__init__.py _ACT_CODES):
//   0 none, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid

typedef long long sg_i64;

__device__ __forceinline__ float sg_exp(float v) { return expf(v); }
__device__ __forceinline__ double sg_exp(double v) { return exp(v); }
__device__ __forceinline__ float sg_tanh(float v) { return tanhf(v); }
__device__ __forceinline__ double sg_tanh(double v) { return tanh(v); }

template <typename T>
__device__ __forceinline__ T sg_activate(T v, int act, T slope)
{
    switch (act) {
    case 1:
        return v > T(0) ? v : T(0);
    case 2:
        return v > T(0) ? v : slope * v;
    case 3:
        return sg_tanh(v);
    case 4: {
        // Stable logistic: never exponentiates a positive number.
        if (v >= T(0)) {
            return T(1) / (T(1) + sg_exp(-v));
        }
        const T e = sg_exp(v);
        return e / (T(1) + e);
    }
    default:
        return v;
    }
}

template <typename T>
__device__ __forceinline__ T sg_activate_grad(T o, int act, T slope)
{
    switch (act) {
    case 1:
        return o > T(0) ? T(1) : T(0);
    case 2:
        return o > T(0) ? T(1) : slope;
    case 3:
        return T(1) - o * o;
    case 4:
        return o * (T(1) - o);
    default:
        return T(1);
    }
}

template <typename T>
__device__ __forceinline__ void sg_bias_act(const T* __restrict__ y, const T* __restrict__ b,
                                            T* __restrict__ out, sg_i64 total, sg_i64 C,
                                            sg_i64 inner, int has_bias, int act, T slope)
{
    const sg_i64 step = (sg_i64)blockDim.x * (sg_i64)gridDim.x;
    for (sg_i64 idx = (sg_i64)blockIdx.x * (sg_i64)blockDim.x + (sg_i64)threadIdx.x;
         idx < total; idx += step) {
        T v = y[idx];
        if (has_bias) {
            v += b[(idx / inner) % C];
        }
        out[idx] = sg_activate<T>(v, act, slope);
    }
}

template <typename T>
__device__ __forceinline__ void sg_bias_act_grad(const T* __restrict__ gout,
                                                 const T* __restrict__ out,
                                                 T* __restrict__ gin, sg_i64 total, int act,
                                                 T slope)
{
    const sg_i64 step = (sg_i64)blockDim.x * (sg_i64)gridDim.x;
    for (sg_i64 idx = (sg_i64)blockIdx.x * (sg_i64)blockDim.x + (sg_i64)threadIdx.x;
         idx < total; idx += step) {
        gin[idx] = gout[idx] * sg_activate_grad<T>(out[idx], act, slope);
    }
}

#define SG_BIAS_ACT_INSTANTIATE(T, SUFFIX)                                                  \
    extern "C" __global__ void bias_act_##SUFFIX(                                           \
        const T* __restrict__ y, const T* __restrict__ b, T* __restrict__ out,              \
        sg_i64 total, sg_i64 C, sg_i64 inner, int has_bias, int act, T slope)               \
    {                                                                                       \
        sg_bias_act<T>(y, b, out, total, C, inner, has_bias, act, slope);                   \
    }                                                                                       \
    extern "C" __global__ void bias_act_grad_##SUFFIX(                                      \
        const T* __restrict__ gout, const T* __restrict__ out, T* __restrict__ gin,         \
        sg_i64 total, int act, T slope)                                                     \
    {                                                                                       \
        sg_bias_act_grad<T>(gout, out, gin, total, act, slope);                             \
    }

SG_BIAS_ACT_INSTANTIATE(float, f32)
SG_BIAS_ACT_INSTANTIATE(double, f64)

#undef SG_BIAS_ACT_INSTANTIATE
