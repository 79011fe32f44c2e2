// Fused GRU gate math for one block of hidden units, linear_before_reset =
// true (lbr, PyTorch's form).
#include "kernels/gru_rz.h"
#include "kernels/kernels_isa.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

template <typename T>
void gru_postgemm_fwd(const GruFwdArgs<T>& a) {
    using V = Vec<T>;
    using R = typename V::reg;
    constexpr int W = V::width;
    const int s = a.units;
    for (int r = 0; r < a.rows; ++r) {
        const T* gx = a.gx + r * a.ld_gx;
        const T* gh = a.gh + r * a.ld_gh;
        const T* hp = a.h_prev + r * a.ld_h_prev;
        T* h = a.h + r * a.ld_h;
        T* ws = a.ws ? a.ws + r * a.ld_ws : nullptr;
        for_unit_vectors<T>(s, [&](auto vectors, int u0, int n) {
            constexpr int U = decltype(vectors)::value;
            // r and z see both projections and both biases.
            R rz[2 * U];
            gru_rz_gates<T, U>(gx, gh, a.bias, s, u0, n, rz);
            // n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
            R ghn[U], ng[U];
            for (int v = 0; v < U; ++v) {
                const int u = u0 + v * W;
                ghn[v] = V::add(load_any(gh + 2 * s + u, n), load_any(a.bias_hn + u, n));
                const R xn = V::add(load_any(gx + 2 * s + u, n), load_any(a.bias + 2 * s + u, n));
                ng[v] = V::fmadd(rz[2 * v], ghn[v], xn);
            }
            sigmoid_tanh<T, 0, U>(nullptr, ng);
            for (int v = 0; v < U; ++v) {
                const int u = u0 + v * W;
                // h = (1 - z) n + z h_prev = n + z (h_prev - n).
                store_any(h + u, V::fmadd(rz[2 * v + 1], V::sub(load_any(hp + u, n), ng[v]), ng[v]), n);
                if (ws) {
                    store_any(ws + 0 * s + u, rz[2 * v], n);
                    store_any(ws + 1 * s + u, rz[2 * v + 1], n);
                    store_any(ws + 2 * s + u, ng[v], n);
                    store_any(ws + 3 * s + u, ghn[v], n);
                }
            }
        });
    }
}

template <typename T>
void gru_postgemm_bwd(const GruBwdArgs<T>& a) {
    using V = Vec<T>;
    using R = typename V::reg;
    constexpr int W = V::width;
    const int s = a.units;
    const R one = V::set1(T(1));
    for (int r = 0; r < a.rows; ++r) {
        const T* ws = a.ws + r * a.ld_ws;
        const T* hp = a.h_prev + r * a.ld_h_prev;
        const T* dy = a.dy ? a.dy + r * a.ld_dy : nullptr;
        const T* dhr = a.dh_rec + r * a.ld_dh_rec;
        T* dgx = a.dgx + r * a.ld_dgx;
        T* dgh = a.dgh + r * a.ld_dgh;
        T* dhp = a.dh_prev + r * a.ld_dh_prev;
        for (int u = 0; u < s; u += W) {
            const int n = s - u < W ? s - u : W;
            R rg = load_any(ws + 0 * s + u, n);
            R zg = load_any(ws + 1 * s + u, n);
            R ng = load_any(ws + 2 * s + u, n);
            R ghn = load_any(ws + 3 * s + u, n);
            R dh = load_any(dhr + u, n);
            if (dy) dh = V::add(dh, load_any(dy + u, n));
            // Through h = n + z (h_prev - n).
            R dz = V::mul(dh, V::sub(load_any(hp + u, n), ng));
            R dn = V::mul(dh, V::sub(one, zg));
            store_any(dhp + u, V::mul(dh, zg), n);
            // Through the activations; r enters n through r * ghn.
            R dan = V::mul(dn, V::sub(one, V::mul(ng, ng)));
            R dar = V::mul(V::mul(dan, ghn), V::mul(rg, V::sub(one, rg)));
            R daz = V::mul(dz, V::mul(zg, V::sub(one, zg)));
            store_any(dgx + 0 * s + u, dar, n);
            store_any(dgx + 1 * s + u, daz, n);
            store_any(dgx + 2 * s + u, dan, n);
            store_any(dgh + 0 * s + u, dar, n);
            store_any(dgh + 1 * s + u, daz, n);
            store_any(dgh + 2 * s + u, V::mul(dan, rg), n);
        }
    }
}

template <typename T>
void gru_dgh_from_dgx(int rows, int units, const T* ws, std::ptrdiff_t ld_ws, T* dg, std::ptrdiff_t ld_dg) {
    using V = Vec<T>;
    constexpr int W = V::width;
    for (int r = 0; r < rows; ++r) {
        const T* rg = ws + r * ld_ws;
        T* dn = dg + r * ld_dg + 2 * units;
        for (int u = 0; u < units; u += W) {
            const int n = units - u < W ? units - u : W;
            store_any(dn + u, V::mul(load_any(dn + u, n), load_any(rg + u, n)), n);
        }
    }
}

}  // namespace

template <typename T>
void fill_postgemm_gru(Kernels<T>& k) {
    k.gru_postgemm_fwd = &gru_postgemm_fwd<T>;
    k.gru_postgemm_bwd = &gru_postgemm_bwd<T>;
    k.gru_dgh_from_dgx = &gru_dgh_from_dgx<T>;
}

template void fill_postgemm_gru<float>(Kernels<float>&);
template void fill_postgemm_gru<double>(Kernels<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
