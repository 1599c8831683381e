// Fast whole-program runner: the Verilated accelerator plus an external-memory model,
// driven entirely in C++ (no Python per cycle). Loaded with ctypes (sim/fast.py); built with
// -DBARE_MAIN it is also the bare C++ loop the benchmarks compare against.
//
// Exposes what fault injection stands on: enumeration of every public variable (flops and
// memories are picked out in Python), peek/poke, snapshot/restore, and a cycle watchdog.
#include "Vllmaccel_top.h"
#include "verilated.h"
#include "verilated_syms.h"
#include "bus_layout.h"     // generated from hw/bus.py: BUS_BYTES and every field's offset
// A traced build (sim/fast.py, waves=...) is its own build: the untraced one pays nothing.
#if defined(WAVES_FST)
#include "verilated_fst_c.h"
typedef VerilatedFstC Waves;
#define WAVES_FORMAT 1
#elif defined(WAVES_VCD)
#include "verilated_vcd_c.h"
typedef VerilatedVcdC Waves;
#define WAVES_FORMAT 1
#endif

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

// Verilator spells "__" in port names as "___05F".
#define REQ_VALID bus___05Freq___05Fvalid
#define REQ_READY bus___05Freq___05Fready
#define REQ_PAYLOAD bus___05Freq___05Fpayload
#define RESP_VALID bus___05Fresp___05Fvalid
#define RESP_READY bus___05Fresp___05Fready
#define RESP_PAYLOAD bus___05Fresp___05Fpayload

namespace {

// Payloads are bit-packed (bus_layout.h). Copy them into a zero-padded word buffer once,
// then extract fields with word operations.
constexpr int PAD_WORDS = (REQ_BITS + 31) / 32 + 2;
// a response is written bytewise: its data from bit 0, its tag in the byte after
static_assert(RESP_RDATA_LSB == 0 && RESP_TAG_LSB == 8 * BUS_BYTES, "response layout");

static inline uint64_t get_bits(const uint32_t* w, int lsb, int width) {
    int i = lsb >> 5, sh = lsb & 31;
    unsigned __int128 v = (unsigned __int128)w[i] | ((unsigned __int128)w[i + 1] << 32) |
                          ((unsigned __int128)w[i + 2] << 64);
    v >>= sh;
    return width >= 64 ? (uint64_t)v : (uint64_t)v & ((1ull << width) - 1);
}

template <typename T>
static inline void load_words(uint32_t* dst, const T& src) {
    memset(dst, 0, PAD_WORDS * 4);
    memcpy(dst, &src, sizeof(T) < PAD_WORDS * 4 ? sizeof(T) : PAD_WORDS * 4);
}

struct Resp {
    uint64_t ready_at;
    uint8_t data[BUS_BYTES];
    uint8_t tag;
};

struct VarRef {
    std::string name;
    void* datap;
    int bits;
    int depth;
    int entsize;
};

// A stuck-at: bits of one variable entry forced (and-mask, then or-mask) after every clock
// edge until `until` (exclusive); UINT64_MAX means permanent.
struct Force {
    int var;
    int index;
    std::vector<uint8_t> and_mask, or_mask;
    uint64_t until;
};

// A traced memory port: at each cycle whose enable (variable `en`, or always when -1) is
// set, the entry its address selects (variable `addr`, bits lo..lo+width) is recorded.
struct TPort {
    int en, addr, lo, width, depth;
};

// A variable the timeline watches, sampled after every clock edge:
//   kind 0: its value changed (recorded with the cycle the new value holds in);
//   kind 1: a counter: whether it went up this cycle (recorded when that flips);
//   kind 2: a pending count that restarts from the cycle's event when the round-robin
//           selector `rr` (its value before the edge) equals `sel`: whether the event
//           was non-zero (recorded when that flips).
struct Watch {
    int var, kind, rr;
    uint64_t sel;
    uint8_t last[16];
    uint64_t last_count;
    bool on;
};

struct Event {
    uint64_t cycle;
    uint32_t watch;
    uint8_t value[16];
};

struct Sim {
    VerilatedContext ctx;
    Vllmaccel_top* top;
    std::vector<uint8_t> dram;
    double bytes_per_cycle = BUS_BYTES;
    double credit = 0;
    int latency = 1;
    uint64_t cycle = 0;
    std::deque<Resp> resp;
    std::vector<VarRef> vars;
    uint64_t mem_bytes_moved = 0;
    bool in_reset = false;
    std::vector<Force> forces;
    std::vector<TPort> tports;
    bool tracing = false;
    std::vector<uint64_t> tcycle;
    std::vector<uint32_t> tport, tentry;
    int cnt_mem = -1;       // counter_store = "bram": the counters' RAM, read directly
    bool csr_clocked = false;   // the counter port is a RAM's (a netlist: nothing to peek)
#ifdef WAVES_FORMAT
    Waves* waves = nullptr;
#endif
    uint64_t w_from = 0, w_to = 0, w_period = 2;   // the window [from, to) and the period
    std::vector<Watch> watches;
    bool timeline = false;
    std::vector<Event> events;
    uint64_t rr_last = 0;   // kind 2's selector as it was before this edge
    int rr_var = -1;

    Sim() {
        ctx.debug(0);
        ctx.randReset(0);
#ifdef WAVES_FORMAT
        ctx.traceEverOn(true);
        ctx.timeunit(-12);
        ctx.timeprecision(-12);
#endif
        top = new Vllmaccel_top{&ctx, "TOP"};
        for (auto& sc : *ctx.scopeNameMap()) {
            const VerilatedScope* s = sc.second;
            if (!s->varsp()) continue;
            for (auto& v : *s->varsp()) {
                const VerilatedVar& var = v.second;
                if (var.udims() > 1) continue;
                VarRef r;
                r.name = std::string(s->name()) + "." + v.first;
                r.datap = var.datap();
                r.bits = (int)var.entBits();
                r.depth = var.udims() == 1 ? var.unpackedRanges()[0].elements() : 1;
                r.entsize = (int)var.entSize();
                const std::string tail = ".cnt_mem";
                if (r.depth > 1 && r.name.size() > tail.size()
                        && r.name.compare(r.name.size() - tail.size(), tail.size(), tail) == 0)
                    cnt_mem = (int)vars.size();
                vars.push_back(r);
            }
        }
    }
    ~Sim() {
        close_waves();
        top->final();
        delete top;
    }

    void close_waves() {
#ifdef WAVES_FORMAT
        if (waves) { waves->close(); delete waves; waves = nullptr; }
#endif
    }

    // Dump the current values at `phase` (0: the clock low, the inputs for the coming
    // edge; 1: just after the edge) when the cycle is in the window.
    inline void dump(int phase) {
#ifdef WAVES_FORMAT
        if (waves && !in_reset && cycle >= w_from && cycle < w_to)
            waves->dump(cycle * w_period + phase * (w_period / 2));
#else
        (void)phase;
#endif
    }

    void apply_forces() {
        for (size_t i = 0; i < forces.size();) {
            Force& f = forces[i];
            if (cycle >= f.until) { forces.erase(forces.begin() + i); continue; }
            VarRef& v = vars[f.var];
            uint8_t* p = (uint8_t*)v.datap + (size_t)f.index * v.entsize;
            for (int b = 0; b < v.entsize; ++b) p[b] = (p[b] & f.and_mask[b]) | f.or_mask[b];
            ++i;
        }
    }

    uint64_t value(int i, int index = 0) const {
        const VarRef& v = vars[i];
        uint64_t x = 0;
        memcpy(&x, (const uint8_t*)v.datap + (size_t)index * v.entsize,
               v.entsize < 8 ? v.entsize : 8);
        return x;
    }

    void record_ports() {
        for (size_t p = 0; p < tports.size(); ++p) {
            const TPort& t = tports[p];
            if (t.en >= 0 && !(value(t.en) & 1)) continue;
            uint64_t a = value(t.addr) >> t.lo;
            if (t.width < 64) a &= (1ull << t.width) - 1;
            if (a >= (uint64_t)t.depth) continue;
            tcycle.push_back(cycle);
            tport.push_back((uint32_t)p);
            tentry.push_back((uint32_t)a);
        }
    }

    int bytes_of(int i) const { return vars[i].entsize < 16 ? vars[i].entsize : 16; }

    void watch_reset() {
        for (auto& w : watches) {
            memset(w.last, 0, 16);
            memcpy(w.last, vars[w.var].datap, bytes_of(w.var));
            w.last_count = value(w.var);
            w.on = false;
        }
        if (rr_var >= 0) rr_last = value(rr_var);
    }

    void record_timeline() {
        for (size_t i = 0; i < watches.size(); ++i) {
            Watch& w = watches[i];
            if (w.kind == 0) {
                int n = bytes_of(w.var);
                if (n <= 8) {       // the common case: one word compare
                    uint64_t v = value(w.var);
                    if (v == w.last_count) continue;
                    w.last_count = v;
                } else if (memcmp(w.last, vars[w.var].datap, n) == 0) {
                    continue;
                }
                memcpy(w.last, vars[w.var].datap, n);
                Event e{cycle + 1, (uint32_t)i, {0}};
                memcpy(e.value, w.last, 16);
                events.push_back(e);
                continue;
            }
            uint64_t v = value(w.var);
            bool on = w.kind == 1 ? v != w.last_count
                                  : (rr_last == w.sel ? v : v - w.last_count) != 0;
            w.last_count = v;
            if (on != w.on) {
                w.on = on;
                Event e{cycle, (uint32_t)i, {0}};
                e.value[0] = on;
                events.push_back(e);
            }
        }
        if (rr_var >= 0) rr_last = value(rr_var);
    }

    void set_inputs() {
        // request side: accept while the bandwidth credit covers a beat and the response
        // queue is not absurdly deep (the latency pipe)
        top->REQ_READY = !in_reset && (credit >= BUS_BYTES) && resp.size() < (size_t)(latency + 64);
        if (!in_reset && !resp.empty() && resp.front().ready_at <= cycle) {
            top->RESP_VALID = 1;
            uint8_t w[sizeof(top->RESP_PAYLOAD)] = {0};   // rdata bytes, then the tag
            memcpy(w, resp.front().data, BUS_BYTES);
            w[BUS_BYTES] = resp.front().tag;
            memcpy(&top->RESP_PAYLOAD, w, sizeof(w));
        } else {
            top->RESP_VALID = 0;
        }
    }

    void tick() {
        set_inputs();
        top->clk = 0;
        top->eval();
        dump(0);
        if (tracing) record_ports();
        bool req_fire = top->REQ_VALID && top->REQ_READY;
        bool resp_fire = top->RESP_VALID && top->RESP_READY;
        Resp r;
        if (req_fire) {
            uint32_t w[PAD_WORDS];
            load_words(w, top->REQ_PAYLOAD);
            uint64_t addr = get_bits(w, REQ_ADDR_LSB, REQ_ADDR_BITS);
            bool we = get_bits(w, REQ_WE_LSB, REQ_WE_BITS);
            r.tag = (uint8_t)get_bits(w, REQ_TAG_LSB, REQ_TAG_BITS);
            r.ready_at = cycle + latency;
            if (addr + BUS_BYTES <= dram.size()) {
                if (we) {
                    for (int i = 0; i < BUS_BYTES; i += 4) {
                        uint32_t v = (uint32_t)get_bits(w, REQ_WDATA_LSB + 8 * i, 32);
                        memcpy(&dram[addr + i], &v, 4);
                    }
                    memset(r.data, 0, BUS_BYTES);
                } else {
                    memcpy(r.data, &dram[addr], BUS_BYTES);
                }
            } else {
                memset(r.data, 0, BUS_BYTES);   // the accelerator checks ranges itself
            }
            credit -= BUS_BYTES;
            mem_bytes_moved += BUS_BYTES;
        }
        top->clk = 1;
        top->eval();
        if (!forces.empty()) apply_forces();
        dump(1);
        if (timeline && !in_reset) record_timeline();
        if (req_fire) resp.push_back(r);
        if (resp_fire) resp.pop_front();
        ++cycle;
        credit += bytes_per_cycle;
        if (credit > 2 * BUS_BYTES) credit = 2 * BUS_BYTES;
    }
};

// Several models may live in one process (one per runner); Verilator keeps a per-thread
// "current context" pointer, which must name this model's context whenever it is used.
static inline Sim* S(void* h) {
    Sim* s = (Sim*)h;
    Verilated::threadContextp(&s->ctx);
    return s;
}

}  // namespace

extern "C" {

void* sim_new() { return new Sim(); }
void sim_free(void* h) { delete S(h); }

void sim_mem_config(void* h, uint64_t dram_bytes, double bytes_per_cycle, int latency) {
    Sim* s = S(h);
    s->dram.assign(dram_bytes, 0);
    s->bytes_per_cycle = bytes_per_cycle;
    s->latency = latency < 1 ? 1 : latency;
}

void sim_mem_write(void* h, uint64_t addr, const uint8_t* src, uint64_t n) {
    memcpy(&S(h)->dram[addr], src, n);
}

void sim_mem_read(void* h, uint64_t addr, uint8_t* dst, uint64_t n) {
    memcpy(dst, &S(h)->dram[addr], n);
}

void sim_reset(void* h) {
    Sim* s = S(h);
    s->resp.clear();
    s->credit = BUS_BYTES;
    s->top->start = 0;
    s->top->rst = 1;
    s->in_reset = true;     // the memory takes no requests from the design being reset
    for (int i = 0; i < 4; ++i) s->tick();
    s->top->rst = 0;
    s->tick();              // one idle cycle out of reset before anything starts
    s->in_reset = false;
    s->resp.clear();
    s->cycle = 0;
    s->mem_bytes_moved = 0;
}

void sim_start(void* h, uint32_t prog_addr, uint32_t pos) {
    Sim* s = S(h);
    s->top->prog_addr = prog_addr;
    s->top->pos = pos;
    s->top->start = 1;
    s->tick();
    s->top->start = 0;
}

// Run until done or until `max_cycles` more cycles have passed (the watchdog).
// Returns 1 if done, 0 if the budget ran out.
int sim_run(void* h, uint64_t max_cycles) {
    Sim* s = S(h);
    for (uint64_t i = 0; i < max_cycles; ++i) {
        if (s->top->done) return 1;
        s->tick();
    }
    return s->top->done ? 1 : 0;
}

// --- waveforms (a traced build only) -------------------------------------------------
// Open `path` (closing any earlier file) for the cycles [from, to) of the runs that follow,
// a cycle `period` time units (ps) long. Returns -1 when the build is not traced.
int sim_waves(void* h, const char* path, uint64_t from, uint64_t to, uint64_t period) {
    Sim* s = S(h);
    s->close_waves();
#ifdef WAVES_FORMAT
    if (!path || !*path) return 0;
    s->w_from = from;
    s->w_to = to;
    s->w_period = period < 2 ? 2 : period & ~1ull;
    s->waves = new Waves;
    s->top->trace(s->waves, 99);
    s->waves->open(path);
    return s->waves->isOpen() ? 0 : -2;
#else
    (void)path; (void)from; (void)to; (void)period;
    return -1;
#endif
}

// --- the timeline: changes of watched variables, cycle by cycle ----------------------------
// Watch n variables (kind per Watch above; `rr` the kind-2 selector variable or -1).
int sim_timeline_watch(void* h, int n, const int* var, const int* kind, const uint64_t* sel,
                       int rr) {
    Sim* s = S(h);
    s->watches.clear();
    if (rr >= (int)s->vars.size()) return -1;
    s->rr_var = rr;
    for (int i = 0; i < n; ++i) {
        if (var[i] < 0 || var[i] >= (int)s->vars.size() || kind[i] < 0 || kind[i] > 2) return -1;
        if (kind[i] == 2 && rr < 0) return -1;
        Watch w{};
        w.var = var[i];
        w.kind = kind[i];
        w.sel = sel[i];
        s->watches.push_back(w);
    }
    return 0;
}

// Start (clearing what was recorded, taking the current values as the last ones) or stop.
void sim_timeline(void* h, int on) {
    Sim* s = S(h);
    s->timeline = on != 0;
    if (on) { s->events.clear(); s->watch_reset(); }
}

uint64_t sim_timeline_count(void* h) { return ((Sim*)h)->events.size(); }

void sim_timeline_take(void* h, uint64_t* cycle, uint32_t* watch, uint8_t* value) {
    Sim* s = S(h);
    for (size_t i = 0; i < s->events.size(); ++i) {
        cycle[i] = s->events[i].cycle;
        watch[i] = s->events[i].watch;
        memcpy(value + 16 * i, s->events[i].value, 16);
    }
}

// --- memory-port trace (which entry each port touches, cycle by cycle) --------------------
int sim_trace_ports(void* h, int n, const int* en, const int* addr, const int* lo,
                    const int* width, const int* depth) {
    Sim* s = S(h);
    s->tports.clear();
    for (int i = 0; i < n; ++i) {
        if (en[i] >= (int)s->vars.size() || addr[i] < 0 || addr[i] >= (int)s->vars.size())
            return -1;
        s->tports.push_back(TPort{en[i], addr[i], lo[i], width[i], depth[i]});
    }
    return 0;
}

void sim_trace(void* h, int on) {
    Sim* s = S(h);
    s->tracing = on != 0;
    if (on) { s->tcycle.clear(); s->tport.clear(); s->tentry.clear(); }
}

uint64_t sim_trace_count(void* h) { return ((Sim*)h)->tcycle.size(); }

void sim_trace_take(void* h, uint64_t* cycle, uint32_t* port, uint32_t* entry) {
    Sim* s = S(h);
    size_t n = s->tcycle.size();
    memcpy(cycle, s->tcycle.data(), n * 8);
    memcpy(port, s->tport.data(), n * 4);
    memcpy(entry, s->tentry.data(), n * 4);
}

void sim_csr_clocked(void* h, int on) { S(h)->csr_clocked = on != 0; }
uint64_t sim_cycle(void* h) { return ((Sim*)h)->cycle; }
uint64_t sim_mem_bytes_moved(void* h) { return ((Sim*)h)->mem_bytes_moved; }
int sim_done(void* h) { return ((Sim*)h)->top->done; }
int sim_error_code(void* h) { return ((Sim*)h)->top->error ? ((Sim*)h)->top->error_code : 0; }

uint64_t sim_counter(void* h, int idx) {
    Sim* s = S(h);
    if (s->cnt_mem >= 0) {      // counters in a RAM: its read port takes a clock; peek
        const VarRef& v = s->vars[s->cnt_mem];
        if (idx < 0 || idx >= v.depth) return 0;
        uint64_t x = s->value(s->cnt_mem, idx);
        return v.bits < 64 ? x & ((1ull << v.bits) - 1) : x;
    }
    s->top->csr_addr = idx;
    s->top->eval();
    if (s->csr_clocked) {       // one clock edge for the read port, the bus held quiet
        s->top->REQ_READY = 0;
        s->top->RESP_VALID = 0;
        s->top->clk = 0;
        s->top->eval();
        s->top->clk = 1;
        s->top->eval();
    }
    return s->top->csr_data;
}

// --- state enumeration, peek/poke ------------------------------------------------------
int sim_num_vars(void* h) { return (int)((Sim*)h)->vars.size(); }

int sim_var_info(void* h, int i, char* name, int namelen, int* bits, int* depth, int* entsize) {
    Sim* s = S(h);
    if (i < 0 || i >= (int)s->vars.size()) return -1;
    const VarRef& v = s->vars[i];
    snprintf(name, namelen, "%s", v.name.c_str());
    *bits = v.bits;
    *depth = v.depth;
    *entsize = v.entsize;
    return 0;
}

int sim_peek(void* h, int i, int index, uint8_t* out) {
    Sim* s = S(h);
    if (i < 0 || i >= (int)s->vars.size()) return -1;
    const VarRef& v = s->vars[i];
    if (index < 0 || index >= v.depth) return -1;
    memcpy(out, (uint8_t*)v.datap + (size_t)index * v.entsize, v.entsize);
    return 0;
}

int sim_poke(void* h, int i, int index, const uint8_t* in) {
    Sim* s = S(h);
    if (i < 0 || i >= (int)s->vars.size()) return -1;
    const VarRef& v = s->vars[i];
    if (index < 0 || index >= v.depth) return -1;
    memcpy((uint8_t*)v.datap + (size_t)index * v.entsize, in, v.entsize);
    return 0;
}

// --- snapshot / restore -----------------------------------------------------------------
// Layout: [cycle][credit][n_resp][resp...][dram][every variable's storage].
uint64_t sim_snapshot_size(void* h) {
    Sim* s = S(h);
    uint64_t n = 8 + 8 + 8 + s->resp.size() * sizeof(Resp) + s->dram.size();
    for (auto& v : s->vars) n += (uint64_t)v.depth * v.entsize;
    return n;
}

void sim_snapshot(void* h, uint8_t* buf) {
    Sim* s = S(h);
    uint64_t nr = s->resp.size();
    memcpy(buf, &s->cycle, 8); buf += 8;
    memcpy(buf, &s->credit, 8); buf += 8;
    memcpy(buf, &nr, 8); buf += 8;
    for (auto& r : s->resp) { memcpy(buf, &r, sizeof(Resp)); buf += sizeof(Resp); }
    memcpy(buf, s->dram.data(), s->dram.size()); buf += s->dram.size();
    for (auto& v : s->vars) {
        size_t n = (size_t)v.depth * v.entsize;
        memcpy(buf, v.datap, n); buf += n;
    }
}

// Where the parts of a snapshot buffer are (the layout above), for the readers below.
struct SnapParts {
    uint64_t nr;
    const uint8_t *resp, *dram, *vars;
    SnapParts(const Sim* s, const uint8_t* buf) {
        memcpy(&nr, buf + 16, 8);
        resp = buf + 24;
        dram = resp + nr * sizeof(Resp);
        vars = dram + s->dram.size();
    }
};

void sim_restore(void* h, const uint8_t* buf) {
    Sim* s = S(h);
    SnapParts sp(s, buf);
    memcpy(&s->cycle, buf, 8);
    memcpy(&s->credit, buf + 8, 8);
    s->resp.clear();
    for (uint64_t i = 0; i < sp.nr; ++i) {
        Resp r; memcpy(&r, sp.resp + i * sizeof(Resp), sizeof(Resp)); s->resp.push_back(r);
    }
    memcpy(s->dram.data(), sp.dram, s->dram.size());
    const uint8_t* p = sp.vars;
    for (auto& v : s->vars) {
        size_t n = (size_t)v.depth * v.entsize;
        memcpy(v.datap, p, n); p += n;
    }
    s->forces.clear();
    s->top->eval();
}

// Whether the whole state (memory model, DRAM, every variable) equals a snapshot: a faulty
// run whose state is back to the golden run's is masked from then on. Compared in place,
// cheapest parts first.
int sim_state_equal(void* h, const uint8_t* buf) {
    Sim* s = S(h);
    SnapParts sp(s, buf);
    if (memcmp(&s->cycle, buf, 8) != 0 || sp.nr != s->resp.size()) return 0;
    const uint8_t* p = sp.resp;
    for (auto& r : s->resp) {
        if (memcmp(&r, p, sizeof(Resp)) != 0) return 0;
        p += sizeof(Resp);
    }
    p = sp.vars;
    for (auto& v : s->vars) {
        size_t n = (size_t)v.depth * v.entsize;
        if (memcmp(v.datap, p, n) != 0) return 0;
        p += n;
    }
    if (memcmp(&s->credit, buf + 8, 8) != 0) return 0;
    return memcmp(s->dram.data(), sp.dram, s->dram.size()) == 0;
}

// How many of the variables flagged in `include` (one byte per variable) differ from the
// snapshot `buf` (taken from the same model): the faults still latent in the design.
int sim_vars_differ(void* h, const uint8_t* buf, const uint8_t* include) {
    Sim* s = S(h);
    const uint8_t* p = SnapParts(s, buf).vars;
    int count = 0;
    for (size_t i = 0; i < s->vars.size(); ++i) {
        const VarRef& v = s->vars[i];
        size_t n = (size_t)v.depth * v.entsize;
        if (include[i] && memcmp(v.datap, p, n) != 0) ++count;
        p += n;
    }
    return count;
}

// Force bits of variable `i` entry `index`: value = (value & and_mask) | or_mask, now and
// after every clock edge for `duration` cycles (0: permanent).
int sim_force(void* h, int i, int index, const uint8_t* and_mask, const uint8_t* or_mask,
              uint64_t duration) {
    Sim* s = S(h);
    if (i < 0 || i >= (int)s->vars.size()) return -1;
    const VarRef& v = s->vars[i];
    if (index < 0 || index >= v.depth) return -1;
    Force f;
    f.var = i;
    f.index = index;
    f.and_mask.assign(and_mask, and_mask + v.entsize);
    f.or_mask.assign(or_mask, or_mask + v.entsize);
    f.until = duration ? s->cycle + duration : UINT64_MAX;
    s->forces.push_back(f);
    s->apply_forces();
    return 0;
}

void sim_release_all(void* h) { S(h)->forces.clear(); }

}  // extern "C"

#ifdef BARE_MAIN
// The bare C++ loop: load a raw memory image, start at the program address, run to done.
#include <chrono>
#include <cstdlib>
int main(int argc, char** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s IMAGE DRAM_BYTES PROG_ADDR BYTES_PER_CYCLE LATENCY\n", argv[0]);
        return 2;
    }
    FILE* f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    std::vector<uint8_t> img;
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) img.insert(img.end(), buf, buf + n);
    fclose(f);
    Sim s;
    sim_mem_config(&s, strtoull(argv[2], 0, 0), atof(argv[4]), atoi(argv[5]));
    memcpy(s.dram.data(), img.data(), img.size());
    sim_reset(&s);
    auto t0 = std::chrono::steady_clock::now();
    sim_start(&s, (uint32_t)strtoull(argv[3], 0, 0), 0);
    while (!s.top->done) s.tick();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("{\"cycles\": %llu, \"seconds\": %.6f, \"error\": %d}\n",
           (unsigned long long)s.cycle, dt, s.top->error ? (int)s.top->error_code : 0);
    return 0;
}
#endif
