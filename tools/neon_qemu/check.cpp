// Cross-ISA check for the NEON kernels on an x86 machine: built with an
// aarch64 cross compiler and run under qemu-user by run.sh. Runs the full
// forward and backward drivers with the NEON and the scalar kernel sets on
// the same inputs and compares every output, then checks sigmoid and tanh
// against libm. Exit status = number of mismatching cases.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "layer/rnn.h"

using namespace rnnkit;

template <class T>
double max_rel_diff(const std::vector<T>& got, const std::vector<T>& want) {
    double diff = 0, scale = 1.0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        diff = std::max(diff, std::fabs(double(got[i]) - double(want[i])));
        scale = std::max(scale, std::fabs(double(want[i])));
    }
    return diff / scale;
}

template <class T>
std::vector<std::vector<T>> forward_backward(Isa isa, CellKind cell, bool lbr, int steps, int B, int I, int H,
                                             bool reverse) {
    // Same seed for both ISAs: identical inputs.
    std::mt19937 gen(7);
    std::uniform_real_distribution<double> uni(-0.5, 0.5);
    auto random = [&](std::size_t n) { std::vector<T> v(n); for (auto& e : v) e = T(uni(gen)); return v; };
    const int GH = gate_count(cell) * H;
    const bool lstm = cell == CellKind::lstm;
    auto w_ih = random(std::size_t(GH) * I), w_hh = random(std::size_t(GH) * H), b_ih = random(GH), b_hh = random(GH);
    auto x = random(std::size_t(steps) * B * I), h0 = random(std::size_t(B) * H), c0 = random(std::size_t(B) * H);
    auto dy = random(std::size_t(steps) * B * H);
    auto packed = pack_rnn<T>(cell, isa, I, H, w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data(), 1, lbr);

    std::vector<T> y(dy.size()), h_n(h0.size()), c_n(h0.size());
    ForwardArgs<T> f;
    f.steps = steps; f.batch = B; f.reverse = reverse; f.x = x.data(); f.h0 = h0.data();
    f.c0 = lstm ? c0.data() : nullptr; f.y = y.data(); f.h_n = h_n.data(); f.c_n = lstm ? c_n.data() : nullptr;
    TrainingContext<T> ctx;
    ctx.weights = packed;
    rnn_forward<T>(*packed, f, &ctx, 1);

    std::vector<T> dx(x.size()), dh0(h0.size()), dc0(h0.size()), dw_ih(w_ih.size()), dw_hh(w_hh.size()), db_ih(GH), db_hh(GH);
    BackwardArgs<T> b;
    b.dy = dy.data(); b.dx = dx.data(); b.dh0 = dh0.data(); b.dc0 = lstm ? dc0.data() : nullptr;
    b.dw_ih = dw_ih.data(); b.dw_hh = dw_hh.data(); b.db_ih = db_ih.data(); b.db_hh = db_hh.data();
    rnn_backward<T>(ctx, b, 1);
    return {y, h_n, c_n, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh};
}

template <class T>
int check(const char* dtype, double tol) {
    int fails = 0;
    // T, B, I, H: degenerate, around the 4-lane vectors, tall K, partial tiles.
    const int shapes[][4] = {{1, 1, 1, 1}, {3, 2, 7, 9}, {5, 3, 17, 33}, {4, 5, 100, 65}, {2, 13, 300, 40}};
    // LSTM, GRU with linear_before_reset true (lbr) and false (no_lbr).
    const struct { CellKind cell; bool lbr; const char* name; } forms[] = {
        {CellKind::lstm, true, "lstm"}, {CellKind::gru, true, "gru_lbr"}, {CellKind::gru, false, "gru_no_lbr"}};
    for (const auto& f : forms)
        for (const auto& s : shapes)
            for (bool reverse : {false, true}) {
                auto neon = forward_backward<T>(Isa::neon, f.cell, f.lbr, s[0], s[1], s[2], s[3], reverse);
                auto scalar = forward_backward<T>(Isa::scalar, f.cell, f.lbr, s[0], s[1], s[2], s[3], reverse);
                double err = 0;
                for (std::size_t k = 0; k < neon.size(); ++k) err = std::max(err, max_rel_diff(neon[k], scalar[k]));
                if (err > tol) {
                    ++fails;
                    std::printf("MISMATCH %s %s T=%d B=%d I=%d H=%d reverse=%d: %.3e\n", dtype, f.name, s[0], s[1],
                                s[2], s[3], int(reverse), err);
                }
            }
    // Activations against libm on a grid over [-100, 100].
    const Kernels<T>& k = kernels_of<T>(kernels_for(Isa::neon));
    std::vector<T> xs;
    for (double v = -100; v <= 100; v += 0.0137) xs.push_back(T(v));
    std::vector<T> sig(xs.size()), th(xs.size());
    k.sigmoid(std::ptrdiff_t(xs.size()), xs.data(), sig.data());
    k.tanh(std::ptrdiff_t(xs.size()), xs.data(), th.data());
    double sig_err = 0, tanh_err = 0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const double s = 1.0 / (1.0 + std::exp(-double(xs[i]))), t = std::tanh(double(xs[i]));
        if (s > 1e-30) sig_err = std::max(sig_err, std::fabs(sig[i] - s) / s);
        if (t != 0) tanh_err = std::max(tanh_err, std::fabs(th[i] - t) / std::fabs(t));
    }
    std::printf("%s: NEON vs scalar drivers: %d mismatches; sigmoid max rel err %.2e, tanh %.2e\n", dtype, fails,
                sig_err, tanh_err);
    return fails;
}

int main() {
    if (!isa_available(Isa::neon)) {
        std::printf("NEON kernels not available in this build\n");
        return 1;
    }
    return check<float>("float32", 1e-4) + check<double>("float64", 1e-12);
}
