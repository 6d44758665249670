// gpubench: the baremetal-ai GPU benchmark (docs/validation.md, "GPU benchmarks").
//
// One process measures one GPU (or, with --p2p, every ordered pair of GPUs) and prints one JSON document on
// stdout. library/gpu_bench.py compiles this file with nvcc on the node, runs it per GPU (under numactl on the
// GPU's NUMA node when it can) and judges the numbers against validation/thresholds.yml.
//
//   gpubench --list
//   gpubench --device N [--tests gemm_bf16,gemm_fp16,copy,h2d,d2h] [--gemm-size 8192] [--iters 20]
//            [--batches 10] [--warmup-s 1] [--duration-s 0] [--copy-mib 2048] [--host-mib 512] [--algos 8]
//   gpubench --p2p [--host-mib 512]
//
// How each number is made (and why) is written next to the code below. In short:
//   gemm_*  cuBLASLt matmul, TN layout, FP32 accumulate, 32 MiB workspace; up to --algos heuristic algorithms are
//           timed and the fastest is kept; A and B hold uniform random values (never zeros: predictable data
//           draws less power and over-reports); FLOP = 2*M*N*K. Result: median TFLOP/s over --batches batches of
//           --iters matmuls, each batch timed with CUDA events, after --warmup-s seconds of warm-up matmuls.
//           --duration-s > 0 keeps multiplying for that long (burn-in) and reports the first and last 10% of
//           the batches, so a GPU that slows as it heats shows it.
//   copy    device-to-device copy of a --copy-mib buffer, by a 16-byte-per-thread kernel and by cudaMemcpyAsync;
//           bytes read + bytes written per second (the convention of bandwidthTest and BabelStream "Copy"); the
//           better of the two methods is the result, both are reported.
//   h2d/d2h pinned host memory (cudaHostAlloc), cudaMemcpyAsync of --host-mib on a non-default stream, median GB/s.
//   p2p     cudaMemcpyPeerAsync GPU i -> GPU j with peer access enabled where the GPUs allow it, median GB/s.
//
// Exit status: 0 with a result document; 2 with {"error": ...} on stdout for bad arguments or a CUDA/cuBLAS error.

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static const int kSchema = 1;

// --- output ---------------------------------------------------------------------------------------------------

static std::string json_escape(const std::string &s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    return out;
}

[[noreturn]] static void die(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("{\"tool\": \"baremetal-gpubench\", \"schema\": %d, \"error\": \"%s\"}\n", kSchema,
           json_escape(msg).c_str());
    fflush(stdout);
    exit(2);
}

#define CK(call)                                                                                    \
    do {                                                                                            \
        cudaError_t e_ = (call);                                                                    \
        if (e_ != cudaSuccess) die("%s failed: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__, \
                                   __LINE__);                                                       \
    } while (0)

#define CKB(call)                                                                                  \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) die("%s failed: cuBLAS status %d (%s:%d)", #call,         \
                                             static_cast<int>(s_), __FILE__, __LINE__);            \
    } while (0)

// A growing JSON object for one test's result; numbers only, plus a few strings.
struct Obj {
    std::string body;
    void add(const char *k, double v) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.6g", v);
        sep();
        body += std::string("\"") + k + "\": " + buf;
    }
    void add_int(const char *k, long long v) {
        sep();
        body += std::string("\"") + k + "\": " + std::to_string(v);
    }
    void add_str(const char *k, const std::string &v) {
        sep();
        body += std::string("\"") + k + "\": \"" + json_escape(v) + "\"";
    }
    void add_bool(const char *k, bool v) {
        sep();
        body += std::string("\"") + k + "\": " + (v ? "true" : "false");
    }
    void add_list(const char *k, const std::vector<double> &v) {
        sep();
        body += std::string("\"") + k + "\": [";
        for (size_t i = 0; i < v.size(); ++i) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s%.6g", i ? ", " : "", v[i]);
            body += buf;
        }
        body += "]";
    }
    std::string str() const { return "{" + body + "}"; }

   private:
    void sep() {
        if (!body.empty()) body += ", ";
    }
};

static double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// --- options --------------------------------------------------------------------------------------------------

struct Options {
    bool list = false;
    bool p2p = false;
    int device = -1;
    std::vector<std::string> tests = {"gemm_bf16", "gemm_fp16", "copy", "h2d", "d2h"};
    int gemm_size = 8192;
    int iters = 20;
    int batches = 10;
    double warmup_s = 1.0;
    double duration_s = 0.0;
    long long copy_mib = 2048;
    long long host_mib = 512;
    int algos = 8;
};

static long long parse_int(const char *flag, const char *v, long long lo, long long hi) {
    char *end = nullptr;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) die("%s: expected an integer in [%lld, %lld], got '%s'", flag, lo, hi, v);
    return x;
}

static double parse_double(const char *flag, const char *v, double lo, double hi) {
    char *end = nullptr;
    double x = strtod(v, &end);
    if (!*v || *end || x < lo || x > hi) die("%s: expected a number in [%g, %g], got '%s'", flag, lo, hi, v);
    return x;
}

static Options parse_args(int argc, char **argv) {
    Options o;
    static const char *known[] = {"gemm_bf16", "gemm_fp16", "copy", "h2d", "d2h"};
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> const char * {
            if (i + 1 >= argc) die("%s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "--list") o.list = true;
        else if (a == "--p2p") o.p2p = true;
        else if (a == "--device") o.device = static_cast<int>(parse_int("--device", val(), 0, 1023));
        else if (a == "--gemm-size") o.gemm_size = static_cast<int>(parse_int("--gemm-size", val(), 256, 65536));
        else if (a == "--iters") o.iters = static_cast<int>(parse_int("--iters", val(), 1, 100000));
        else if (a == "--batches") o.batches = static_cast<int>(parse_int("--batches", val(), 1, 100000));
        else if (a == "--warmup-s") o.warmup_s = parse_double("--warmup-s", val(), 0, 3600);
        else if (a == "--duration-s") o.duration_s = parse_double("--duration-s", val(), 0, 7 * 86400);
        else if (a == "--copy-mib") o.copy_mib = parse_int("--copy-mib", val(), 1, 1 << 20);
        else if (a == "--host-mib") o.host_mib = parse_int("--host-mib", val(), 1, 1 << 20);
        else if (a == "--algos") o.algos = static_cast<int>(parse_int("--algos", val(), 1, 64));
        else if (a == "--tests") {
            o.tests.clear();
            std::string s = val();
            size_t start = 0;
            while (start <= s.size()) {
                size_t comma = s.find(',', start);
                std::string t = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
                bool ok = false;
                for (const char *k : known) ok = ok || t == k;
                if (!ok) die("--tests: unknown test '%s' (known: gemm_bf16, gemm_fp16, copy, h2d, d2h)", t.c_str());
                o.tests.push_back(t);
                if (comma == std::string::npos) break;
                start = comma + 1;
            }
        } else if (a == "--help" || a == "-h") {
            printf("usage: gpubench --list | --device N [--tests ...] [options] | --p2p (see the source header)\n");
            exit(0);
        } else {
            die("unknown argument '%s' (see the header of gpubench.cu)", a.c_str());
        }
    }
    if (!o.list && !o.p2p && o.device < 0) die("give --list, --p2p or --device N");
    return o;
}

// --- device description ---------------------------------------------------------------------------------------

static std::string device_json(int dev) {
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, dev));
    char bus[32];
    snprintf(bus, sizeof bus, "%08x:%02x:%02x.0", p.pciDomainID, p.pciBusID, p.pciDeviceID);
    Obj o;
    o.add_int("index", dev);
    o.add_str("name", p.name);
    o.add_str("pci_bus_id", bus);
    o.add_str("compute_capability", std::to_string(p.major) + "." + std::to_string(p.minor));
    o.add_int("multiprocessors", p.multiProcessorCount);
    o.add_int("memory_bytes", static_cast<long long>(p.totalGlobalMem));
    o.add_int("l2_bytes", p.l2CacheSize);
    return o.str();
}

// --- random fill ----------------------------------------------------------------------------------------------

__device__ __forceinline__ float hash_uniform(uint64_t i, uint64_t seed) {
    uint64_t z = i + seed * 0x9E3779B97F4A7C15ull;  // splitmix64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;  // [-1, 1)
}

template <typename T>
__global__ void fill_random(T *p, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x)
        p[i] = static_cast<T>(hash_uniform(i, seed));
}

// --- GEMM -----------------------------------------------------------------------------------------------------

struct Gemm {
    cublasLtHandle_t lt = nullptr;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    void *A = nullptr, *B = nullptr, *C = nullptr, *ws = nullptr;
    size_t ws_bytes = 32u << 20;  // 32 MiB: cuBLAS's recommendation for Hopper, enough for earlier GPUs too
    float alpha = 1.0f, beta = 0.0f;
    cudaStream_t stream = nullptr;

    void run(const cublasLtMatmulAlgo_t &algo) {
        CKB(cublasLtMatmul(lt, op, &alpha, A, a, B, b, &beta, C, c, C, c, &algo, ws, ws_bytes, stream));
    }
    ~Gemm() {
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (c) cublasLtMatrixLayoutDestroy(c);
        if (op) cublasLtMatmulDescDestroy(op);
        if (lt) cublasLtDestroy(lt);
        cudaFree(A);
        cudaFree(B);
        cudaFree(C);
        cudaFree(ws);
    }
};

// Milliseconds for `n` back-to-back runs of `fn`, timed with events on `stream`.
template <typename F>
static double time_ms(cudaStream_t stream, int n, F fn) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0, stream));
    for (int i = 0; i < n; ++i) fn();
    CK(cudaEventRecord(e1, stream));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return ms;
}

static std::string bench_gemm(const Options &o, const std::string &name) {
    const bool bf16 = name == "gemm_bf16";
    const cudaDataType_t dt = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    const int64_t m = o.gemm_size, n = o.gemm_size, k = o.gemm_size;
    const size_t elem = 2;
    Gemm g;
    CK(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking));
    CKB(cublasLtCreate(&g.lt));
    CK(cudaMalloc(&g.A, m * k * elem));
    CK(cudaMalloc(&g.B, k * n * elem));
    CK(cudaMalloc(&g.C, m * n * elem));
    CK(cudaMalloc(&g.ws, g.ws_bytes));
    if (bf16) {
        fill_random<<<1024, 256, 0, g.stream>>>(static_cast<__nv_bfloat16 *>(g.A), m * k, 1);
        fill_random<<<1024, 256, 0, g.stream>>>(static_cast<__nv_bfloat16 *>(g.B), k * n, 2);
    } else {
        fill_random<<<1024, 256, 0, g.stream>>>(static_cast<__half *>(g.A), m * k, 1);
        fill_random<<<1024, 256, 0, g.stream>>>(static_cast<__half *>(g.B), k * n, 2);
    }
    CK(cudaGetLastError());
    // TN: A is stored K x M and transposed, B is K x N, C/D is M x N (column-major), FP32 accumulate and scale.
    CKB(cublasLtMatmulDescCreate(&g.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKB(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKB(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CKB(cublasLtMatrixLayoutCreate(&g.a, dt, k, m, k));
    CKB(cublasLtMatrixLayoutCreate(&g.b, dt, k, n, k));
    CKB(cublasLtMatrixLayoutCreate(&g.c, dt, m, n, m));
    cublasLtMatmulPreference_t pref;
    CKB(cublasLtMatmulPreferenceCreate(&pref));
    CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g.ws_bytes,
                                             sizeof g.ws_bytes));
    std::vector<cublasLtMatmulHeuristicResult_t> heur(o.algos);
    int found = 0;
    CKB(cublasLtMatmulAlgoGetHeuristic(g.lt, g.op, g.a, g.b, g.c, g.c, pref, o.algos, heur.data(), &found));
    cublasLtMatmulPreferenceDestroy(pref);
    if (found == 0) die("%s: cuBLASLt found no algorithm for %lldx%lldx%lld", name.c_str(), (long long)m,
                        (long long)n, (long long)k);
    const double flop = 2.0 * m * n * k;

    // Warm-up: let clocks and temperature leave idle before anything is timed.
    const double t_start = now_s();
    double warm_until = t_start + o.warmup_s;
    do {
        time_ms(g.stream, 5, [&] { g.run(heur[0].algo); });
    } while (now_s() < warm_until);

    // Pick the fastest of the heuristic's candidates (timing the top few gains a few percent over the first).
    int best = 0;
    double best_ms = 1e30;
    for (int i = 0; i < found; ++i) {
        if (heur[i].state != CUBLAS_STATUS_SUCCESS || heur[i].workspaceSize > g.ws_bytes) continue;
        time_ms(g.stream, 2, [&] { g.run(heur[i].algo); });
        double ms = time_ms(g.stream, 5, [&] { g.run(heur[i].algo); }) / 5;
        if (ms < best_ms) best_ms = ms, best = i;
    }

    std::vector<double> rates;
    const double t_measure = now_s();
    do {
        double ms = time_ms(g.stream, o.iters, [&] { g.run(heur[best].algo); });
        rates.push_back(flop * o.iters / (ms * 1e-3) / 1e12);
    } while (static_cast<int>(rates.size()) < o.batches || now_s() - t_measure < o.duration_s);
    const double elapsed = now_s() - t_start;

    Obj r;
    r.add_str("test", name);
    r.add_int("m", m);
    r.add_int("n", n);
    r.add_int("k", k);
    r.add_str("layout", "TN");
    r.add_str("compute", "CUBLAS_COMPUTE_32F");
    r.add_int("workspace_bytes", static_cast<long long>(g.ws_bytes));
    r.add_int("algos_tried", found);
    r.add_int("algo_chosen", best);
    r.add_int("iters_per_batch", o.iters);
    r.add_int("batches", static_cast<long long>(rates.size()));
    r.add("tflops", median(rates));
    r.add("tflops_best", *std::max_element(rates.begin(), rates.end()));
    r.add("tflops_worst", *std::min_element(rates.begin(), rates.end()));
    if (o.duration_s > 0) {
        size_t w = std::max<size_t>(1, rates.size() / 10);
        r.add("tflops_first_window", median(std::vector<double>(rates.begin(), rates.begin() + w)));
        r.add("tflops_last_window", median(std::vector<double>(rates.end() - w, rates.end())));
    } else {
        r.add_list("tflops_batches", rates);
    }
    r.add("duration_s", elapsed);
    return r.str();
}

// --- device memory copy ---------------------------------------------------------------------------------------

__global__ void copy16(const int4 *__restrict__ src, int4 *__restrict__ dst, size_t n) {
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x)
        dst[i] = src[i];
}

static std::string bench_copy(const Options &o, int dev) {
    const size_t bytes = static_cast<size_t>(o.copy_mib) << 20;
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    if (2 * bytes + (256u << 20) > free_b)
        die("copy: two buffers of %lld MiB do not fit in %zu MiB free; lower --copy-mib", o.copy_mib, free_b >> 20);
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, dev));
    void *a = nullptr, *b = nullptr;
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    fill_random<<<1024, 256, 0, s>>>(static_cast<float *>(a), bytes / 4, 3);
    CK(cudaGetLastError());
    const size_t n16 = bytes / 16;
    // A few waves of resident blocks, each thread striding through the buffer.
    const int grid = p.multiProcessorCount * 8;
    const double t0 = now_s();
    auto kernel = [&] { copy16<<<grid, 512, 0, s>>>(static_cast<int4 *>(a), static_cast<int4 *>(b), n16); };
    auto memcpy_ = [&] { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s)); };
    time_ms(s, 3, kernel);
    time_ms(s, 3, memcpy_);
    CK(cudaGetLastError());
    std::vector<double> rk, rm;
    for (int i = 0; i < o.batches; ++i) {
        rk.push_back(2.0 * bytes * o.iters / (time_ms(s, o.iters, kernel) * 1e-3) / 1e12);
        rm.push_back(2.0 * bytes * o.iters / (time_ms(s, o.iters, memcpy_) * 1e-3) / 1e12);
    }
    CK(cudaGetLastError());
    CK(cudaFree(a));
    CK(cudaFree(b));
    CK(cudaStreamDestroy(s));
    const double k = median(rk), m = median(rm);
    Obj r;
    r.add_str("test", "copy");
    r.add_int("bytes", static_cast<long long>(bytes));
    r.add_str("counting", "read+write");
    r.add("tbps", std::max(k, m));
    r.add_str("method", k >= m ? "kernel" : "memcpy");
    r.add("kernel_tbps", k);
    r.add("memcpy_tbps", m);
    r.add("tbps_best", std::max(*std::max_element(rk.begin(), rk.end()), *std::max_element(rm.begin(), rm.end())));
    r.add("duration_s", now_s() - t0);
    return r.str();
}

// --- host <-> device ------------------------------------------------------------------------------------------

static std::vector<double> copy_rates(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, int reps,
                                      cudaStream_t s) {
    auto one = [&] { CK(cudaMemcpyAsync(dst, src, bytes, kind, s)); };
    time_ms(s, 2, one);
    std::vector<double> out;
    for (int i = 0; i < reps; ++i) out.push_back(bytes / (time_ms(s, 1, one) * 1e-3) / 1e9);
    return out;
}

static std::string bench_host(const Options &o, const std::string &name) {
    const size_t bytes = static_cast<size_t>(o.host_mib) << 20;
    void *h = nullptr, *d = nullptr;
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    const double t0 = now_s();
    CK(cudaHostAlloc(&h, bytes, cudaHostAllocDefault));
    CK(cudaMalloc(&d, bytes));
    memset(h, 0x5a, bytes);
    const bool h2d = name == "h2d";
    std::vector<double> rates = h2d ? copy_rates(d, h, bytes, cudaMemcpyHostToDevice, o.batches * 2, s)
                                    : copy_rates(h, d, bytes, cudaMemcpyDeviceToHost, o.batches * 2, s);
    CK(cudaFreeHost(h));
    CK(cudaFree(d));
    CK(cudaStreamDestroy(s));
    Obj r;
    r.add_str("test", name);
    r.add_int("bytes", static_cast<long long>(bytes));
    r.add_str("host_memory", "pinned");
    r.add("gbps", median(rates));
    r.add("gbps_best", *std::max_element(rates.begin(), rates.end()));
    r.add("duration_s", now_s() - t0);
    return r.str();
}

// --- peer to peer ---------------------------------------------------------------------------------------------

static std::string bench_p2p(const Options &o, int count) {
    const size_t bytes = static_cast<size_t>(o.host_mib) << 20;
    std::vector<void *> buf(count, nullptr);
    for (int i = 0; i < count; ++i) {
        CK(cudaSetDevice(i));
        CK(cudaMalloc(&buf[i], bytes));
    }
    std::string out = "[";
    for (int i = 0; i < count; ++i) {
        for (int j = 0; j < count; ++j) {
            if (i == j) continue;
            int can = 0;
            CK(cudaDeviceCanAccessPeer(&can, i, j));
            CK(cudaSetDevice(i));
            if (can) {
                cudaError_t e = cudaDeviceEnablePeerAccess(j, 0);
                if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) CK(e);
                cudaGetLastError();
            }
            cudaStream_t s;
            CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
            auto one = [&] { CK(cudaMemcpyPeerAsync(buf[j], j, buf[i], i, bytes, s)); };
            time_ms(s, 2, one);
            std::vector<double> rates;
            for (int r = 0; r < o.batches; ++r) rates.push_back(bytes / (time_ms(s, 1, one) * 1e-3) / 1e9);
            CK(cudaStreamDestroy(s));
            if (can) CK(cudaDeviceDisablePeerAccess(j));
            Obj r;
            r.add_str("test", "p2p");
            r.add_int("src", i);
            r.add_int("dst", j);
            r.add_bool("peer_access", can != 0);
            r.add_int("bytes", static_cast<long long>(bytes));
            r.add("gbps", median(rates));
            r.add("gbps_best", *std::max_element(rates.begin(), rates.end()));
            out += (out.size() > 1 ? ", " : "") + r.str();
        }
    }
    for (int i = 0; i < count; ++i) {
        CK(cudaSetDevice(i));
        CK(cudaFree(buf[i]));
    }
    return out + "]";
}

// --- main -----------------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    Options o = parse_args(argc, argv);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) die("no usable GPU: cudaGetDeviceCount: %s", cudaGetErrorString(e));
    int rt = 0, drv = 0, lt = static_cast<int>(cublasLtGetVersion());
    CK(cudaRuntimeGetVersion(&rt));
    CK(cudaDriverGetVersion(&drv));
    char head[256];  // printed with the body at the end: an error on the way prints only the error document
    snprintf(head, sizeof head,
             "{\"tool\": \"baremetal-gpubench\", \"schema\": %d, \"cuda_runtime\": %d, \"cuda_driver\": %d, "
             "\"cublaslt\": %d, \"device_count\": %d",
             kSchema, rt, drv, lt, count);
    std::string body;
    if (o.list) {
        body = ", \"devices\": [";
        for (int i = 0; i < count; ++i) body += (i ? ", " : "") + device_json(i);
        body += "]";
    } else if (o.p2p) {
        body = count < 2 ? ", \"results\": []" : ", \"results\": " + bench_p2p(o, count);
    } else {
        if (o.device >= count) die("--device %d: this node has %d GPU(s)", o.device, count);
        CK(cudaSetDevice(o.device));
        body = ", \"device\": " + device_json(o.device) + ", \"results\": [";
        bool first = true;
        for (const std::string &t : o.tests) {
            std::string r;
            if (t == "gemm_bf16" || t == "gemm_fp16") r = bench_gemm(o, t);
            else if (t == "copy") r = bench_copy(o, o.device);
            else r = bench_host(o, t);
            body += (first ? "" : ", ") + r;
            first = false;
        }
        body += "]";
    }
    printf("%s%s}\n", head, body.c_str());
    return 0;
}
