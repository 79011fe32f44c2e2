// The states of a forward call: where each step reads h (c) and writes
// them, the per-step workspace, and the copies out at the end. The time
// loop asks it for pointers; it owns the buffers and their ping-pong.
//
// - training: every state lives in the context's state rows (see
//   TrainingContext), initial states placed there first;
// - inference: h goes straight into y (a step reads the previous step's
//   rows of y), c alternates between two buffers;
// - inference, reverse, with lengths (plan.state_pingpong): h alternates
//   between two buffers as well, both starting as h0 (c0), so a sequence
//   that starts at step t finds its initial state in the rows it reads
//   (earlier steps wrote fewer rows); y gets a copy of each step's rows.
#pragma once
#include <cstddef>
#include <cstring>

#include "layer/layer_plan.h"
#include "layer/rnn.h"
#include "layer/rnn_common.h"

namespace rnnkit {

template <typename T>
class ForwardStates {
public:
    ForwardStates(const PackedRnn<T>& w, const ForwardArgs<T>& a, const ForwardPlan& plan, const StepRows& rows,
                  TrainingContext<T>* ctx)
        : w_(w), a_(a), rows_(rows), ctx_(ctx), H_(w.H), BH_(std::size_t(a.batch) * w.H),
          lstm_(w.cell == CellKind::lstm), pingpong_(plan.state_pingpong) {
        if (ctx) init_training();
        else init_inference();
        // GRU reset before linear: r * h_prev, kept for every step in training
        // (dW_hn needs it); in inference one step's, and its gates as scratch.
        if (!w.linear_before_reset && ctx) ctx->rh.reset(rows.total() * H_);
        if (!w.linear_before_reset && !ctx) {
            rh_step_.reset(BH_);
            ws_step_.reset(std::size_t(a.batch) * kWorkspaceSlots * H_);
        }
    }

    // The states step s (processing order), time step t, reads and writes.
    T* h_out(int s, int t) const {
        if (ctx_) return ctx_->h.data() + ctx_->out_row(t) * H_;
        if (pingpong_) return h_pingpong_.data() + (s % 2) * BH_;
        return a_.y + rows_.start(t) * H_;
    }
    const T* h_in(int s, int t) const {
        if (ctx_) return ctx_->h.data() + ctx_->in_row(t) * H_;
        return s == 0 ? h_init_ : h_out(s - 1, a_.reverse ? t + 1 : t - 1);
    }
    T* c_out(int s, int t) const {
        if (!lstm_) return nullptr;
        return ctx_ ? ctx_->c.data() + ctx_->out_row(t) * H_ : c_pingpong_.data() + (s % 2) * BH_;
    }
    const T* c_in(int s, int t) const {
        if (!lstm_) return nullptr;
        if (ctx_) return ctx_->c.data() + ctx_->in_row(t) * H_;
        return s == 0 ? c_init_ : c_pingpong_.data() + ((s - 1) % 2) * BH_;
    }
    // Gates kept for backward (training), or the GRU reset before linear's scratch.
    T* workspace(int t) const {
        if (ctx_) return ctx_->gates.data() + rows_.start(t) * kWorkspaceSlots * H_;
        return ws_step_.size() ? ws_step_.data() : nullptr;
    }
    T* rh(int t) const {
        if (w_.linear_before_reset) return nullptr;
        return ctx_ ? ctx_->rh.data() + rows_.start(t) * H_ : rh_step_.data();
    }

    // After step t wrote its blocks [jb, je) into h: y's copy of them, when
    // the states live in the ping-pong buffers (each thread copies the units
    // it computed).
    void step_done(int t, const T* h, int jb, int je) const {
        if (!pingpong_ || jb >= je) return;
        const int u0 = w_.layout.block_start(jb), u1 = w_.layout.block_start(je - 1) + w_.layout.block_units(je - 1);
        T* yt = a_.y + rows_.start(t) * H_;
        for (int r = 0; r < rows_.rows(t); ++r)
            std::memcpy(yt + std::size_t(r) * H_ + u0, h + std::size_t(r) * H_ + u0, std::size_t(u1 - u0) * sizeof(T));
    }

    // y (training keeps it among the state rows) and the final states: each
    // sequence's state after its own last step (reverse: after t = 0, the
    // last step of all). Rows ending at the same step are copied together; a
    // sequence's rows are not written after its end.
    void write_outputs() const {
        const int steps = a_.steps, B = a_.batch;
        if (ctx_ && !a_.reverse) std::memcpy(a_.y, ctx_->h.data() + BH_, rows_.total() * H_ * sizeof(T));
        if (ctx_ && a_.reverse)
            for (int t = 0; t < steps; ++t)
                std::memcpy(a_.y + rows_.start(t) * H_, h_out(0, t), std::size_t(rows_.rows(t)) * H_ * sizeof(T));
        for (int b = 0; b < B;) {
            const int s_end = a_.reverse ? steps - 1 : rows_.length(b) - 1;
            const int t_end = a_.reverse ? 0 : s_end;
            const int b_end = rows_.rows(t_end);
            const std::size_t off = std::size_t(b) * H_, len = std::size_t(b_end - b) * H_;
            copy_unless_same(a_.h_n + off, h_out(s_end, t_end) + off, len);
            if (lstm_) copy_unless_same(a_.c_n + off, c_out(s_end, t_end) + off, len);
            b = b_end;
        }
    }

private:
    void init_training() {
        const std::size_t N = rows_.total();
        ctx_->steps = a_.steps;
        ctx_->batch = a_.batch;
        ctx_->reverse = a_.reverse;
        ctx_->x = a_.x;
        ctx_->gates.reset(N * kWorkspaceSlots * H_);
        ctx_->h.reset(BH_ + N * H_);
        place_initial(ctx_->h.data(), a_.h0);
        if (lstm_) {
            ctx_->c.reset(BH_ + N * H_);
            place_initial(ctx_->c.data(), a_.c0);
        }
    }
    // Forward: one block before out(0). Reverse: in each in(t), the rows of
    // the sequences that start at t (all of in(T-1)).
    void place_initial(T* store, const T* init) const {
        if (!a_.reverse) return copy_or_zero(store, init, BH_);
        for (int t = 0; t < a_.steps; ++t) {
            const int b0 = t + 1 < a_.steps ? rows_.rows(t + 1) : 0, b1 = rows_.rows(t);
            if (b1 > b0)
                copy_or_zero(store + (ctx_->in_row(t) + b0) * H_, init ? init + std::size_t(b0) * H_ : nullptr,
                             std::size_t(b1 - b0) * H_);
        }
    }
    void init_inference() {
        h_init_ = a_.h0;
        c_init_ = a_.c0;
        if (!h_init_ || (lstm_ && !c_init_)) {
            zeros_.reset(BH_);
            zeros_.fill_zero();
            if (!h_init_) h_init_ = zeros_.data();
            if (!c_init_) c_init_ = zeros_.data();
        }
        // Only two cell states, alternating between steps.
        if (lstm_) c_pingpong_.reset(2 * BH_);
        if (!pingpong_) return;
        h_pingpong_.reset(2 * BH_);
        for (int k = 0; k < 2; ++k) {
            std::memcpy(h_pingpong_.data() + k * BH_, h_init_, BH_ * sizeof(T));
            if (lstm_) std::memcpy(c_pingpong_.data() + k * BH_, c_init_, BH_ * sizeof(T));
        }
    }

    const PackedRnn<T>& w_;
    const ForwardArgs<T>& a_;
    const StepRows& rows_;
    TrainingContext<T>* ctx_;
    const int H_;
    const std::size_t BH_;
    const bool lstm_, pingpong_;
    const T* h_init_ = nullptr;
    const T* c_init_ = nullptr;
    // Mutable: the loop writes states through a const store.
    mutable AlignedBuffer<T> zeros_, h_pingpong_, c_pingpong_, rh_step_, ws_step_;
};

}  // namespace rnnkit
