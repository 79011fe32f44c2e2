// Fused LSTM gate math for one block of hidden units (the "post-GEMM" part
// of a step): bias, activations, state update and workspace in one pass
// while the block's gate pre-activations are still in L1.
#include "kernels/kernels_isa.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

template <typename T>
void lstm_postgemm_fwd(const LstmFwdArgs<T>& a) {
    using V = Vec<T>;
    using R = typename V::reg;
    constexpr int W = V::width;
    const int s = a.units;
    for (int r = 0; r < a.rows; ++r) {
        const T* gx = a.gx + r * a.ld_gx;
        const T* gh = a.gh + r * a.ld_gh;
        const T* cp = a.c_prev + r * a.ld_c_prev;
        T* h = a.h + r * a.ld_h;
        T* c = a.c + r * a.ld_c;
        T* ws = a.ws ? a.ws + r * a.ld_ws : nullptr;
        for (int u = 0; u < s; u += W) {
            const int n = s - u < W ? s - u : W;
            // Pre-activations of the four gates of these units.
            R pre[4];
            for (int g = 0; g < 4; ++g) {
                const int o = g * s + u;
                pre[g] = V::add(V::add(load_any(gx + o, n), load_any(gh + o, n)), load_any(a.bias + o, n));
            }
            R ig = sigmoid<T>(pre[0]);
            R fg = sigmoid<T>(pre[1]);
            R gg = tanh<T>(pre[2]);
            R og = sigmoid<T>(pre[3]);
            // c = f * c_prev + i * g ; h = o * tanh(c)
            R cn = V::fmadd(fg, load_any(cp + u, n), V::mul(ig, gg));
            R hn = V::mul(og, tanh<T>(cn));
            store_any(c + u, cn, n);
            store_any(h + u, hn, n);
            if (ws) {
                store_any(ws + 0 * s + u, ig, n);
                store_any(ws + 1 * s + u, fg, n);
                store_any(ws + 2 * s + u, gg, n);
                store_any(ws + 3 * s + u, og, n);
            }
        }
    }
}

template <typename T>
void lstm_postgemm_bwd(const LstmBwdArgs<T>& a) {
    using V = Vec<T>;
    using R = typename V::reg;
    constexpr int W = V::width;
    const int s = a.units;
    const R one = V::set1(T(1));
    for (int r = 0; r < a.rows; ++r) {
        const T* ws = a.ws + r * a.ld_ws;
        const T* cp = a.c_prev + r * a.ld_c_prev;
        const T* cc = a.c + r * a.ld_c;
        const T* dy = a.dy ? a.dy + r * a.ld_dy : nullptr;
        const T* dhr = a.dh_rec + r * a.ld_dh_rec;
        T* dc = a.dc + r * a.ld_dc;
        T* dg = a.dgates + r * a.ld_dgates;
        for (int u = 0; u < s; u += W) {
            const int n = s - u < W ? s - u : W;
            R ig = load_any(ws + 0 * s + u, n);
            R fg = load_any(ws + 1 * s + u, n);
            R gg = load_any(ws + 2 * s + u, n);
            R og = load_any(ws + 3 * s + u, n);
            R dh = load_any(dhr + u, n);
            if (dy) dh = V::add(dh, load_any(dy + u, n));
            // Through h = o * tanh(c): do = dh * tanh(c); dc += dh * o * (1 - tanh(c)^2).
            R tc = tanh<T>(load_any(cc + u, n));
            R d_o = V::mul(dh, tc);
            R dct = V::fmadd(V::mul(dh, og), V::sub(one, V::mul(tc, tc)), load_any(dc + u, n));
            // Through c = f * c_prev + i * g.
            R di = V::mul(dct, gg);
            R df = V::mul(dct, load_any(cp + u, n));
            R dgg = V::mul(dct, ig);
            store_any(dc + u, V::mul(dct, fg), n);
            // Through the activations: sigmoid' = s (1 - s), tanh' = 1 - t^2.
            store_any(dg + 0 * s + u, V::mul(di, V::mul(ig, V::sub(one, ig))), n);
            store_any(dg + 1 * s + u, V::mul(df, V::mul(fg, V::sub(one, fg))), n);
            store_any(dg + 2 * s + u, V::mul(dgg, V::sub(one, V::mul(gg, gg))), n);
            store_any(dg + 3 * s + u, V::mul(d_o, V::mul(og, V::sub(one, og))), n);
        }
    }
}

}  // namespace

template <typename T>
void fill_postgemm_lstm(Kernels<T>& k) {
    k.lstm_postgemm_fwd = &lstm_postgemm_fwd<T>;
    k.lstm_postgemm_bwd = &lstm_postgemm_bwd<T>;
}

template void fill_postgemm_lstm<float>(Kernels<float>&);
template void fill_postgemm_lstm<double>(Kernels<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
