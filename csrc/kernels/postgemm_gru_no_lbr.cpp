// Fused GRU gate math for one block of hidden units, linear_before_reset =
// false (no_lbr): the two halves of a step on either side of the n gate's
// recurrent product, forward and backward (see GruNoLbr*Args in
// kernel_table.h).
#include "kernels/gru_rz.h"
#include "kernels/kernels_isa.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

template <typename T>
void gru_no_lbr_postgemm_fwd_rz(const GruNoLbrRzFwdArgs<T>& a) {
    using V = Vec<T>;
    using R = typename V::reg;
    constexpr int W = V::width;
    const int s = a.units;
    for (int r = 0; r < a.rows; ++r) {
        const T* gx = a.gx + r * a.ld_gx;
        const T* gh = a.gh + r * a.ld_gh;
        const T* hp = a.h_prev + r * a.ld_h_prev;
        T* rz = a.rz + r * a.ld_rz;
        T* rh = a.rh + r * a.ld_rh;
        for_unit_vectors<T>(s, [&](auto vectors, int u0, int n) {
            constexpr int U = decltype(vectors)::value;
            R g[2 * U];
            gru_rz_gates<T, U>(gx, gh, a.bias, s, u0, n, g);
            for (int v = 0; v < U; ++v) {
                const int u = u0 + v * W;
                store_any(rz + u, g[2 * v], n);
                store_any(rz + s + u, g[2 * v + 1], n);
                // The reset gate acts on h before the n gate's linear map.
                store_any(rh + u, V::mul(g[2 * v], load_any(hp + u, n)), n);
            }
        });
    }
}

template <typename T>
void gru_no_lbr_postgemm_fwd_n(const GruNoLbrNFwdArgs<T>& a) {
    using V = Vec<T>;
    using R = typename V::reg;
    constexpr int W = V::width;
    const int s = a.units;
    for (int r = 0; r < a.rows; ++r) {
        const T* gx = a.gx + r * a.ld_gx;
        const T* gh = a.gh + r * a.ld_gh;
        const T* z = a.z + r * a.ld_z;
        const T* hp = a.h_prev + r * a.ld_h_prev;
        T* h = a.h + r * a.ld_h;
        T* nws = a.n ? a.n + r * a.ld_n : nullptr;
        for_unit_vectors<T>(s, [&](auto vectors, int u0, int n) {
            constexpr int U = decltype(vectors)::value;
            R ng[U];
            for (int v = 0; v < U; ++v) {
                const int u = u0 + v * W;
                ng[v] = V::add(V::add(load_any(gx + u, n), load_any(gh + u, n)), load_any(a.bias + u, n));
            }
            sigmoid_tanh<T, 0, U>(nullptr, ng);
            for (int v = 0; v < U; ++v) {
                const int u = u0 + v * W;
                // h = (1 - z) n + z h_prev = n + z (h_prev - n).
                store_any(h + u, V::fmadd(load_any(z + u, n), V::sub(load_any(hp + u, n), ng[v]), ng[v]), n);
                if (nws) store_any(nws + u, ng[v], n);
            }
        });
    }
}

template <typename T>
void gru_no_lbr_postgemm_bwd_zn(const GruNoLbrZnBwdArgs<T>& a) {
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
        T* daz_out = a.da_z + r * a.ld_da_z;
        T* dan_out = a.da_n + r * a.ld_da_n;
        T* dhp = a.dh_prev + r * a.ld_dh_prev;
        for (int u = 0; u < s; u += W) {
            const int n = s - u < W ? s - u : W;
            R zg = load_any(ws + 1 * s + u, n);
            R ng = load_any(ws + 2 * s + u, n);
            R dh = load_any(dhr + u, n);
            if (dy) dh = V::add(dh, load_any(dy + u, n));
            // Through h = n + z (h_prev - n).
            R dz = V::mul(dh, V::sub(load_any(hp + u, n), ng));
            R dn = V::mul(dh, V::sub(one, zg));
            store_any(dhp + u, V::mul(dh, zg), n);
            // Through the activations.
            store_any(dan_out + u, V::mul(dn, V::sub(one, V::mul(ng, ng))), n);
            store_any(daz_out + u, V::mul(dz, V::mul(zg, V::sub(one, zg))), n);
        }
    }
}

template <typename T>
void gru_no_lbr_postgemm_bwd_r(const GruNoLbrRBwdArgs<T>& a) {
    using V = Vec<T>;
    using R = typename V::reg;
    constexpr int W = V::width;
    const int s = a.units;
    const R one = V::set1(T(1));
    for (int r = 0; r < a.rows; ++r) {
        const T* rr = a.r + r * a.ld_r;
        const T* hp = a.h_prev + r * a.ld_h_prev;
        const T* drh = a.d_rh + r * a.ld_d_rh;
        T* dar_out = a.da_r + r * a.ld_da_r;
        T* dhp = a.dh_prev + r * a.ld_dh_prev;
        for (int u = 0; u < s; u += W) {
            const int n = s - u < W ? s - u : W;
            R rg = load_any(rr + u, n);
            R d = load_any(drh + u, n);
            // r * h_prev: d/dr = h_prev (then through the sigmoid), d/dh_prev = r.
            store_any(dar_out + u, V::mul(V::mul(d, load_any(hp + u, n)), V::mul(rg, V::sub(one, rg))), n);
            store_any(dhp + u, V::fmadd(d, rg, load_any(dhp + u, n)), n);
        }
    }
}

}  // namespace

template <typename T>
void fill_postgemm_gru_no_lbr(Kernels<T>& k) {
    k.gru_no_lbr_postgemm_fwd_rz = &gru_no_lbr_postgemm_fwd_rz<T>;
    k.gru_no_lbr_postgemm_fwd_n = &gru_no_lbr_postgemm_fwd_n<T>;
    k.gru_no_lbr_postgemm_bwd_zn = &gru_no_lbr_postgemm_bwd_zn<T>;
    k.gru_no_lbr_postgemm_bwd_r = &gru_no_lbr_postgemm_bwd_r<T>;
}

template void fill_postgemm_gru_no_lbr<float>(Kernels<float>&);
template void fill_postgemm_gru_no_lbr<double>(Kernels<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
