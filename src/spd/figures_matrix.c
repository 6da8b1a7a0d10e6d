// Matrix heat maps (figures.h: spd_fig_matrices), for PermutedCIPlots and UVPlots.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "spd/figures.h"

#define PANEL_W 420
#define PANEL_H 300
#define PLOT_L 40
#define PLOT_T 22
#define PLOT_W 360
#define PLOT_H 256
#define INK 0x202020

// Sequential white -> dark (matplotlib's Blues / Reds end points).
static uint32_t sequential(double v, uint32_t lo, uint32_t hi) {
    if (!(v == v)) return 0x808080;
    double t = v < 0 ? 0 : v > 1 ? 1 : v;
    int c[3];
    for (int k = 0; k < 3; k++) {
        int a = (int)(lo >> (16 - 8 * k) & 0xff), b = (int)(hi >> (16 - 8 * k) & 0xff);
        c[k] = (int)lround(a + (b - a) * t);
    }
    return (uint32_t)(c[0] << 16 | c[1] << 8 | c[2]);
}

int spd_fig_matrices(const char *path, int n_panels, const char *const *titles, const double *const *mats,
                     const int *rows, const int *cols, int per_row, spd_cmap cmap) {
    if (n_panels < 1 || per_row < 1) return spd_set_error("matrix figure: no panels");
    double vmin = INFINITY, vmax = -INFINITY;
    for (int p = 0; p < n_panels; p++)
        for (long i = 0; i < (long)rows[p] * cols[p]; i++) {
            vmin = fmin(vmin, mats[p][i]);
            vmax = fmax(vmax, mats[p][i]);
        }
    if (!(vmax > vmin)) vmin -= 0.5, vmax += 0.5;
    int grid_rows = (n_panels + per_row - 1) / per_row;
    spd_image im;
    spd_image_init(&im, per_row * PANEL_W, grid_rows * PANEL_H);
    for (int p = 0; p < n_panels; p++) {
        int px = (p % per_row) * PANEL_W, py = (p / per_row) * PANEL_H;
        char t[160];
        snprintf(t, sizeof t, "%s", titles[p]);
        int tw = spd_text_width(t, 1);
        spd_image_text(&im, px + PLOT_L + (PLOT_W - tw) / 2, py + 6, t, 1, INK);
        const int R = rows[p], C = cols[p];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                double v = mats[p][(long)r * C + c];
                uint32_t rgb = cmap == SPD_CMAP_BLUES  ? sequential(v, 0xf7fbff, 0x08306b)
                               : cmap == SPD_CMAP_REDS ? sequential(v, 0xfff5f0, 0x67000d)
                                                       : spd_colormap_diverging(2 * (v - vmin) / (vmax - vmin) - 1);
                int x0 = px + PLOT_L + (int)((long)c * PLOT_W / C), x1 = px + PLOT_L + (int)((long)(c + 1) * PLOT_W / C);
                int y0 = py + PLOT_T + (int)((long)r * PLOT_H / R), y1 = py + PLOT_T + (int)((long)(r + 1) * PLOT_H / R);
                spd_image_rect(&im, x0, y0, x1 > x0 ? x1 - x0 : 1, y1 > y0 ? y1 - y0 : 1, rgb);
            }
        spd_image_frame(&im, px + PLOT_L - 1, py + PLOT_T - 1, PLOT_W + 2, PLOT_H + 2, INK);
    }
    int rc = spd_image_write_png(&im, path);
    spd_image_free(&im);
    return rc;
}
