// The Verilated board top with a simulated UART on its pins, loaded through ctypes
// (boards/sim.py). Bytes given to board_send are shifted into the board's rx pin as 8N1
// frames of DIV cycles per bit; the board's tx pin is sampled mid-bit by a UART receiver
// model and the bytes collected for board_recv. No Python runs inside the cycle loop.
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>
#include "Vboard.h"
#include "verilated.h"

struct Board {
    VerilatedContext ctx;
    Vboard *top;
    int div;
    uint64_t cycle = 0;
    std::deque<uint8_t> to_board;
    std::vector<uint8_t> from_board;
    // driver of the board's rx pin
    int drv_left = 0, drv_timer = 0;
    uint16_t drv_frame = 0x3ff;
    // receiver on the board's tx pin
    int rcv_state = 0, rcv_timer = 0, rcv_bit = 0;
    uint8_t rcv_shift = 0;

    explicit Board(int d) : div(d) {
        top = new Vboard(&ctx);
        top->rx = 1;
        top->clk = 0;
        top->rst = 1;
        for (int i = 0; i < 4; i++) tick();
        top->rst = 0;
    }
    ~Board() { delete top; }

    void drive() {
        if (drv_left == 0 && !to_board.empty()) {
            drv_frame = (uint16_t)((to_board.front() << 1) | (1 << 9));
            to_board.pop_front();
            drv_left = 10;
            drv_timer = div;
        }
        top->rx = drv_left ? (drv_frame & 1) : 1;
        if (drv_left && --drv_timer == 0) {
            drv_frame >>= 1;
            drv_left--;
            drv_timer = div;
        }
    }

    void sample() {
        int tx = top->tx & 1;
        switch (rcv_state) {
        case 0:
            if (!tx) { rcv_state = 1; rcv_timer = div / 2; }
            break;
        case 1:
            if (--rcv_timer == 0) {
                if (tx) rcv_state = 0;
                else { rcv_state = 2; rcv_timer = div; rcv_bit = 0; rcv_shift = 0; }
            }
            break;
        case 2:
            if (--rcv_timer == 0) {
                rcv_timer = div;
                if (rcv_bit < 8) {
                    rcv_shift = (uint8_t)((rcv_shift >> 1) | (tx << 7));
                    rcv_bit++;
                } else {
                    if (tx) from_board.push_back(rcv_shift);
                    rcv_state = 0;
                }
            }
            break;
        }
    }

    void tick() {
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
        cycle++;
    }
};

extern "C" {
void *board_new(int div) { return new Board(div); }
void board_free(void *h) { delete (Board *)h; }
void board_send(void *h, const uint8_t *data, uint64_t n) {
    Board *b = (Board *)h;
    b->to_board.insert(b->to_board.end(), data, data + n);
}
// Run until `want` bytes wait in the receive buffer, or `max_cycles` have passed.
uint64_t board_run(void *h, uint64_t max_cycles, uint64_t want) {
    Board *b = (Board *)h;
    uint64_t n = 0;
    while (n < max_cycles && b->from_board.size() < want) {
        b->drive();
        b->tick();
        b->sample();
        n++;
    }
    return n;
}
uint64_t board_recv(void *h, uint8_t *buf, uint64_t max) {
    Board *b = (Board *)h;
    uint64_t n = b->from_board.size() < max ? b->from_board.size() : max;
    memcpy(buf, b->from_board.data(), n);
    b->from_board.erase(b->from_board.begin(), b->from_board.begin() + n);
    return n;
}
uint64_t board_available(void *h) { return ((Board *)h)->from_board.size(); }
uint64_t board_sending(void *h) {
    Board *b = (Board *)h;
    return b->to_board.size() + (b->drv_left ? 1 : 0);
}
uint64_t board_cycle(void *h) { return ((Board *)h)->cycle; }
int board_leds(void *h) {
    Board *b = (Board *)h;
    return (b->top->led_running & 1) | ((b->top->led_done & 1) << 1) |
           ((b->top->led_error & 1) << 2);
}
}

double sc_time_stamp() { return 0; }
