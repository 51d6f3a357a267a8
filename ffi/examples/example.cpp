// lmf from C++: RAII owners for the handles, errors as exceptions, a lambda as the streaming
// callback. Usage: example MODEL_DIR TEMPLATE "USER MESSAGE" REPLY_FILE.
// Checks d/dx sum(tanh(x) * w) = (1 - tanh(x)^2) * w, then writes a greedy chat reply to
// REPLY_FILE (the test driver compares it with the C example's and lmf chat's).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "lmf.h"

namespace {

void check(LmfStatus s, const char* what) {
    if (s != LMF_STATUS_OK)
        throw std::runtime_error(std::string(what) + ": " + lmf_last_error());
}

struct TensorFree {
    void operator()(LmfTensor* t) const { lmf_tensor_free(t); }
};
struct GradsFree {
    void operator()(LmfGrads* g) const { lmf_grads_free(g); }
};
struct ModelFree {
    void operator()(LmfModel* m) const { lmf_model_free(m); }
};
using Tensor = std::unique_ptr<LmfTensor, TensorFree>;
using Grads = std::unique_ptr<LmfGrads, GradsFree>;
using Model = std::unique_ptr<LmfModel, ModelFree>;

Tensor from_vector(const std::vector<double>& v) {
    size_t shape[1] = {v.size()};
    LmfTensor* t = nullptr;
    check(lmf_tensor_from_data(v.data(), LMF_DTYPE_F64, shape, 1, &t), "from_data");
    return Tensor(t);
}

std::vector<double> to_vector(const LmfTensor* t) {
    size_t n = 0;
    check(lmf_tensor_numel(t, &n), "numel");
    std::vector<double> v(n);
    check(lmf_tensor_copy_to(t, v.data(), n * sizeof(double)), "copy_to");
    return v;
}

template <typename F>
Tensor apply(F f) {
    LmfTensor* out = nullptr;
    check(f(&out), "op");
    return Tensor(out);
}

void on_piece(const char* piece, void* user) {
    (*static_cast<std::function<void(const char*)>*>(user))(piece);
}

}  // namespace

int main(int argc, char** argv) try {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s MODEL_DIR TEMPLATE MESSAGE REPLY_FILE\n", argv[0]);
        return 2;
    }
    std::vector<double> xs = {-1.5, -0.2, 0.0, 0.7, 2.0}, ws = {0.5, -1.0, 2.0, 0.25, -0.75};
    Tensor x = from_vector(xs), w = from_vector(ws);
    check(lmf_tensor_set_requires_grad(x.get(), true), "requires_grad");
    Tensor t = apply([&](LmfTensor** o) { return lmf_unary(x.get(), LMF_UNARY_OP_TANH, o); });
    Tensor tw = apply([&](LmfTensor** o) { return lmf_binary(t.get(), w.get(), LMF_BINARY_OP_MUL, o); });
    Tensor loss = apply([&](LmfTensor** o) { return lmf_reduce(tw.get(), LMF_REDUCE_OP_SUM, nullptr, 0, false, o); });
    LmfGrads* g = nullptr;
    check(lmf_backward(loss.get(), nullptr, &g), "backward");
    Grads grads(g);
    Tensor dx = apply([&](LmfTensor** o) { return lmf_grads_get(grads.get(), x.get(), o); });
    std::vector<double> got = to_vector(dx.get());
    for (size_t i = 0; i < xs.size(); i++) {
        double want = (1 - std::tanh(xs[i]) * std::tanh(xs[i])) * ws[i];
        if (std::fabs(got[i] - want) > 1e-12) throw std::runtime_error("wrong gradient");
    }
    std::printf("grad ok\n");

    std::string model_arg = std::string("model_name_or_path=") + argv[1];
    std::string template_arg = std::string("template=") + argv[2];
    const char* args[] = {model_arg.c_str(), template_arg.c_str(), "do_sample=false"};
    LmfModel* m = nullptr;
    check(lmf_model_load(args, 3, &m), "model_load");
    Model model(m);

    std::string content;  // argv[3] as a JSON string body (quotes and backslashes escaped)
    for (const char* p = argv[3]; *p; p++) {
        if (*p == '"' || *p == '\\') content += '\\';
        content += *p;
    }
    std::string messages = "[{\"role\": \"user\", \"content\": \"" + content + "\"}]";
    std::string streamed;
    std::function<void(const char*)> sink = [&](const char* piece) { streamed += piece; };
    char* reply = nullptr;
    check(lmf_model_chat(model.get(), messages.c_str(), nullptr, nullptr, nullptr, on_piece,
                         &sink, &reply, nullptr),
          "model_chat");
    std::string text(reply);
    lmf_string_free(reply);
    if (text != streamed) throw std::runtime_error("streamed text differs from the reply");
    std::ofstream(argv[4], std::ios::binary) << text;

    x.reset(), w.reset(), t.reset(), tw.reset(), loss.reset(), dx.reset(), grads.reset(), model.reset();
    if (lmf_live_handles() != 0) throw std::runtime_error("handles left alive");
    std::printf("c++: all checks passed\n");
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
