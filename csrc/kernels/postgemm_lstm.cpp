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
        for_unit_vectors<T>(s, [&](auto vectors, int u, int n) {
            constexpr int U = decltype(vectors)::value;
            // Pre-activations: i, f, o (to the sigmoid) and g (to tanh) of
            // each vector, all of them through the activations at once.
            R sg[3 * U], gg[U];
            for (int v = 0; v < U; ++v) {
                auto pre = [&](int g) {
                    const int o = g * s + u + v * W;
                    return V::add(V::add(load_any(gx + o, n), load_any(gh + o, n)), load_any(a.bias + o, n));
                };
                sg[3 * v + 0] = pre(0);
                sg[3 * v + 1] = pre(1);
                gg[v] = pre(2);
                sg[3 * v + 2] = pre(3);
            }
            sigmoid_tanh<T, 3 * U, U>(sg, gg);
            // c = f * c_prev + i * g ; h = o * tanh(c)
            R cn[U], tc[U];
            for (int v = 0; v < U; ++v) {
                cn[v] = V::fmadd(sg[3 * v + 1], load_any(cp + u + v * W, n), V::mul(sg[3 * v], gg[v]));
                tc[v] = cn[v];
            }
            sigmoid_tanh<T, 0, U>(nullptr, tc);
            for (int v = 0; v < U; ++v) {
                const int o = u + v * W;
                store_any(c + o, cn[v], n);
                store_any(h + o, V::mul(sg[3 * v + 2], tc[v]), n);
                if (ws) {
                    store_any(ws + 0 * s + o, sg[3 * v], n);
                    store_any(ws + 1 * s + o, sg[3 * v + 1], n);
                    store_any(ws + 2 * s + o, gg[v], n);
                    store_any(ws + 3 * s + o, sg[3 * v + 2], n);
                }
            }
        });
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
        for_unit_vectors<T>(s, [&](auto vectors, int u0, int n) {
            constexpr int U = decltype(vectors)::value;
            // tanh(c) of all U vectors side by side.
            R tc[U];
            for (int v = 0; v < U; ++v) tc[v] = load_any(cc + u0 + v * W, n);
            sigmoid_tanh<T, 0, U>(nullptr, tc);
            for (int v = 0; v < U; ++v) {
                const int u = u0 + v * W;
                R ig = load_any(ws + 0 * s + u, n);
                R fg = load_any(ws + 1 * s + u, n);
                R gg = load_any(ws + 2 * s + u, n);
                R og = load_any(ws + 3 * s + u, n);
                R dh = load_any(dhr + u, n);
                if (dy) dh = V::add(dh, load_any(dy + u, n));
                // Through h = o * tanh(c): do = dh * tanh(c); dc += dh * o * (1 - tanh(c)^2).
                R d_o = V::mul(dh, tc[v]);
                R dct = V::fmadd(V::mul(dh, og), V::sub(one, V::mul(tc[v], tc[v])), load_any(dc + u, n));
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
        });
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
