// Evaluation figures as PNG (figures.h).
#include "spd/figures.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"

// ------------------------------------------------------------ raster

void spd_image_init(spd_image *im, int w, int h) {
    im->w = w;
    im->h = h;
    im->rgb = spd_malloc((size_t)w * h * 3);
    memset(im->rgb, 255, (size_t)w * h * 3);
}

void spd_image_free(spd_image *im) {
    free(im->rgb);
    im->rgb = NULL;
}

static void put(spd_image *im, int x, int y, uint32_t c) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    uint8_t *p = im->rgb + ((size_t)y * im->w + x) * 3;
    p[0] = (uint8_t)(c >> 16), p[1] = (uint8_t)(c >> 8), p[2] = (uint8_t)c;
}

void spd_image_rect(spd_image *im, int x, int y, int w, int h, uint32_t rgb) {
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++) put(im, i, j, rgb);
}

void spd_image_frame(spd_image *im, int x, int y, int w, int h, uint32_t rgb) {
    spd_image_rect(im, x, y, w, 1, rgb);
    spd_image_rect(im, x, y + h - 1, w, 1, rgb);
    spd_image_rect(im, x, y, 1, h, rgb);
    spd_image_rect(im, x + w - 1, y, 1, h, rgb);
}

static const struct {
    char c;
    uint8_t rows[7];
} font[] = {
    {' ', {0, 0, 0, 0, 0, 0, 0}},
#include "spd/figures_font.inc"
};

static const uint8_t *glyph(char c) {
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    const uint8_t *q = NULL;
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++) {
        if (font[i].c == c) return font[i].rows;
        if (font[i].c == '?') q = font[i].rows;
    }
    return q;
}

int spd_text_width(const char *s, int scale) { return (int)strlen(s) * 6 * scale; }

void spd_image_text(spd_image *im, int x, int y, const char *s, int scale, uint32_t rgb) {
    for (; *s; s++, x += 6 * scale) {
        const uint8_t *g = glyph(*s);
        for (int r = 0; r < 7; r++)
            for (int b = 0; b < 5; b++)
                if (g[r] >> (4 - b) & 1) spd_image_rect(im, x + b * scale, y + r * scale, scale, scale, rgb);
    }
}

uint32_t spd_colormap_diverging(double v) {
    if (!(v == v)) return 0x808080;
    if (v > 1) v = 1;
    if (v < -1) v = -1;
    // white at 0, red (0xb2182b) at +1, blue (0x2166ac) at -1
    int r0 = v >= 0 ? 0xb2 : 0x21, g0 = v >= 0 ? 0x18 : 0x66, b0 = v >= 0 ? 0x2b : 0xac;
    double t = fabs(v);
    int r = (int)lround(255 + (r0 - 255) * t), g = (int)lround(255 + (g0 - 255) * t),
        b = (int)lround(255 + (b0 - 255) * t);
    return (uint32_t)(r << 16 | g << 8 | b);
}

int spd_image_write_png(const spd_image *im, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return spd_set_error("%s: cannot write: %s", path, strerror(errno));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, info ? &info : NULL);
        fclose(f);
        return spd_set_error("%s: libpng failed writing the image", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < im->h; y++) png_write_row(png, im->rgb + (size_t)y * im->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) return spd_set_error("%s: write failed: %s", path, strerror(errno));
    return 0;
}

int spd_figure_path(char *buf, size_t size, const char *out_dir, const char *key, int64_t step) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/figures", out_dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return spd_set_error("%s: cannot create: %s", dir, strerror(errno));
    int n = snprintf(buf, size, "%s/", dir);
    for (const char *s = key; *s && (size_t)n + 1 < size; s++) buf[n++] = *s == '/' ? '_' : *s;
    buf[n] = 0;
    snprintf(buf + n, size - (size_t)n, "_%lld.png", (long long)step);
    return 0;
}

// ------------------------------------------------------------ plot helpers

#define INK 0x202020
#define GRID 0xdddddd
#define BAR 0x1f77b4

static void fmt_num(char *buf, size_t size, double v) {
    if (v == 0) snprintf(buf, size, "0");
    else if (fabs(v) >= 1e4 || fabs(v) < 1e-2) snprintf(buf, size, "%.0e", v);
    else snprintf(buf, size, "%.3g", v);
}

// Plot area [x, y, w, h]; bars heights[n] (>= 0) on a linear axis [0, ymax] or
// a log axis [10^lo, 10^hi] (zero bars not drawn). x labels at both ends.
static void draw_bars(spd_image *im, int x, int y, int w, int h, const double *heights, int n, int log_y,
                      const char *xlo, const char *xhi, const char *xlabel) {
    double mx = 0, mn_pos = INFINITY;
    for (int i = 0; i < n; i++) {
        if (heights[i] > mx) mx = heights[i];
        if (heights[i] > 0 && heights[i] < mn_pos) mn_pos = heights[i];
    }
    double lo = 0, hi = mx > 0 ? mx : 1;
    if (log_y) {
        lo = mn_pos < INFINITY ? floor(log10(mn_pos)) : 0;
        hi = mx > 0 ? ceil(log10(mx)) : 1;
        if (hi <= lo) hi = lo + 1;
        if (lo > 0 && mn_pos >= 1) lo = 0;  // counts: from 10^0
    }
    // y ticks
    char lab[32];
    int nt = log_y ? (int)(hi - lo) : 4;
    if (nt > 8) nt = 8;
    for (int t = 0; t <= nt; t++) {
        double fv = (double)t / nt;
        int yy = y + h - 1 - (int)lround(fv * (h - 1));
        spd_image_rect(im, x, yy, w, 1, GRID);
        double v = log_y ? pow(10, lo + fv * (hi - lo)) : fv * hi;
        fmt_num(lab, sizeof lab, v);
        spd_image_text(im, x - spd_text_width(lab, 1) - 4, yy - 3, lab, 1, INK);
    }
    for (int i = 0; i < n; i++) {
        double v = heights[i];
        double fv = log_y ? (v > 0 ? (log10(v) - lo) / (hi - lo) : -1) : v / hi;
        if (fv <= 0) continue;
        if (fv > 1) fv = 1;
        int x0 = x + (int)((long)i * w / n), x1 = x + (int)((long)(i + 1) * w / n);
        int bh = (int)lround(fv * (h - 1));
        if (bh < 1) bh = 1;
        spd_image_rect(im, x0, y + h - bh, x1 - x0 > 1 && n < w / 3 ? x1 - x0 - 1 : (x1 - x0 ? x1 - x0 : 1), bh, BAR);
    }
    spd_image_frame(im, x - 1, y - 1, w + 2, h + 2, INK);
    if (xlo) spd_image_text(im, x, y + h + 4, xlo, 1, INK);
    if (xhi) spd_image_text(im, x + w - spd_text_width(xhi, 1), y + h + 4, xhi, 1, INK);
    if (xlabel) spd_image_text(im, x + (w - spd_text_width(xlabel, 1)) / 2, y + h + 14, xlabel, 1, INK);
}

static void panel_title(spd_image *im, int x, int w, int y, const char *prefix, const char *name) {
    char t[256];
    snprintf(t, sizeof t, "%s%s%s", prefix, *prefix ? " " : "", name);
    for (char *s = t; *s; s++)
        if (*s == '.') *s = '_';
    int tw = spd_text_width(t, 1);
    spd_image_text(im, x + (w - tw) / 2 > x - 50 ? x + (w - tw) / 2 : x - 50, y, t, 1, INK);
}

#define PANEL_W 420
#define PANEL_H 260
#define PLOT_L 70
#define PLOT_T 22
#define PLOT_W 330
#define PLOT_H 190

static void grid_dims(int n, int *rows, int *cols) {
    *cols = (n + 5) / 6;
    *rows = n < 6 ? n : 6;
    if (*rows < 1) *rows = 1;
    if (*cols < 1) *cols = 1;
}

int spd_fig_histograms(const char *path, int n_mods, const char *const *names, const double *const *values,
                       const int64_t *counts, int bins, int log_y, const char *title_prefix, const char *xlabel) {
    if (bins < 1) return spd_set_error("histogram: bins must be >= 1");
    int rows, cols;
    grid_dims(n_mods, &rows, &cols);
    spd_image im;
    spd_image_init(&im, cols * PANEL_W, rows * PANEL_H);
    double *h = spd_malloc((size_t)bins * sizeof(double));
    for (int m = 0; m < n_mods; m++) {
        int px = (m / rows) * PANEL_W, py = (m % rows) * PANEL_H;
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < counts[m]; i++) {
            double v = values[m][i];
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        if (counts[m] == 0) lo = 0, hi = 1;
        if (hi == lo) lo -= 0.5, hi += 0.5;  // numpy's range for constant data
        for (int b = 0; b < bins; b++) h[b] = 0;
        for (int64_t i = 0; i < counts[m]; i++) {
            int b = (int)((values[m][i] - lo) / (hi - lo) * bins);
            if (b >= bins) b = bins - 1;
            if (b < 0) b = 0;
            h[b] += 1;
        }
        char a[32], b[32];
        fmt_num(a, sizeof a, lo);
        fmt_num(b, sizeof b, hi);
        panel_title(&im, px + PLOT_L, PLOT_W, py + 6, title_prefix, names[m]);
        draw_bars(&im, px + PLOT_L, py + PLOT_T, PLOT_W, PLOT_H, h, bins, log_y, a, b, xlabel);
    }
    free(h);
    int rc = spd_image_write_png(&im, path);
    spd_image_free(&im);
    return rc;
}

static const double *sort_vals;
static int desc(const void *x, const void *y) {
    double a = sort_vals[*(const int *)x], b = sort_vals[*(const int *)y];
    return a > b ? -1 : a < b ? 1 : 0;
}

int spd_fig_ci_mean(const char *path, int n_mods, const char *const *names, const double *const *means,
                    const int *C, int log_y) {
    int rows, cols;
    grid_dims(n_mods, &rows, &cols);
    spd_image im;
    spd_image_init(&im, cols * PANEL_W, rows * PANEL_H);
    for (int m = 0; m < n_mods; m++) {
        int px = (m / rows) * PANEL_W, py = (m % rows) * PANEL_H;
        int *order = spd_malloc((size_t)C[m] * sizeof(int));
        double *h = spd_malloc((size_t)C[m] * sizeof(double));
        for (int c = 0; c < C[m]; c++) order[c] = c;
        sort_vals = means[m];
        qsort(order, (size_t)C[m], sizeof(int), desc);
        for (int c = 0; c < C[m]; c++) h[c] = means[m][order[c]];
        char hi[32];
        snprintf(hi, sizeof hi, "%d", C[m] - 1);
        panel_title(&im, px + PLOT_L, PLOT_W, py + 6, "Mean CI per component", names[m]);
        draw_bars(&im, px + PLOT_L, py + PLOT_T, PLOT_W, PLOT_H, h, C[m], log_y, "0", hi, "component (sorted)");
        free(order), free(h);
    }
    int rc = spd_image_write_png(&im, path);
    spd_image_free(&im);
    return rc;
}

// Heat map of M [rows, cols] at (x, y), cell px, colour v / scale.
static void heatmap(spd_image *im, int x, int y, const double *M, int rows, int cols, int cell, double scale) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            spd_image_rect(im, x + c * cell, y + r * cell, cell, cell,
                           spd_colormap_diverging(scale > 0 ? M[(size_t)r * cols + c] / scale : 0));
    spd_image_frame(im, x - 1, y - 1, cols * cell + 2, rows * cell + 2, INK);
}

int spd_fig_tms(const char *path, const char *module, const double *W, const double *V, const double *U,
                const double *ci_onehot, int d_out, int d_in, int C, int n_show) {
    if (n_show > C) n_show = C;
    if (n_show < 0) n_show = 0;
    double *norm = spd_malloc((size_t)(C ? C : 1) * sizeof(double));
    int *order = spd_malloc((size_t)(C ? C : 1) * sizeof(int));
    for (int c = 0; c < C; c++) {
        double sv = 0, su = 0;
        for (int i = 0; i < d_in; i++) sv += V[(size_t)i * C + c] * V[(size_t)i * C + c];
        for (int o = 0; o < d_out; o++) su += U[(size_t)c * d_out + o] * U[(size_t)c * d_out + o];
        norm[c] = sqrt(sv * su);
        order[c] = c;
    }
    sort_vals = norm;
    qsort(order, (size_t)C, sizeof(int), desc);
    double scale = 0;
    for (size_t i = 0; i < (size_t)d_out * d_in; i++) scale = fabs(W[i]) > scale ? fabs(W[i]) : scale;
    // cell size: the weight matrices shown as [d_in rows (features), d_out cols] like the paper (W^T)
    int cell = 200 / (d_in > d_out ? d_in : d_out);
    if (cell > 24) cell = 24;
    if (cell < 2) cell = 2;
    int hm_w = d_out * cell, hm_h = d_in * cell;
    int bar_h = ci_onehot ? 70 : 0;
    int pw = (hm_w > 120 ? hm_w : 120) + 30, ph = 24 + hm_h + 14 + bar_h + 30;
    int per_row = 8, n_pan = n_show + 1;
    int n_rows = (n_pan + per_row - 1) / per_row, n_cols = n_pan < per_row ? n_pan : per_row;
    spd_image im;
    spd_image_init(&im, n_cols * pw + 20, 40 + n_rows * ph);
    char t[256];
    snprintf(t, sizeof t, "%s: target W^T (rows = features) and subcomponents by norm; colour scale +-%.3g", module,
             scale);
    spd_image_text(&im, 10, 10, t, 1, INK);
    double *Wc = spd_malloc((size_t)d_in * d_out * sizeof(double));
    double *bars = spd_malloc((size_t)(d_in ? d_in : 1) * sizeof(double));
    for (int p = 0; p < n_pan; p++) {
        int x = 10 + (p % per_row) * pw, y = 40 + (p / per_row) * ph;
        if (p == 0) {
            for (int i = 0; i < d_in; i++)
                for (int o = 0; o < d_out; o++) Wc[(size_t)i * d_out + o] = W[(size_t)o * d_in + i];
            spd_image_text(&im, x, y, "target W", 1, INK);
        } else {
            int c = order[p - 1];
            for (int i = 0; i < d_in; i++)
                for (int o = 0; o < d_out; o++) Wc[(size_t)i * d_out + o] = V[(size_t)i * C + c] * U[(size_t)c * d_out + o];
            snprintf(t, sizeof t, "c%d |%.2g|", c, norm[c]);
            spd_image_text(&im, x, y, t, 1, INK);
        }
        heatmap(&im, x, y + 14, Wc, d_in, d_out, cell, scale);
        if (ci_onehot && p > 0) {
            int c = order[p - 1];
            for (int i = 0; i < d_in; i++) bars[i] = ci_onehot[(size_t)i * C + c];
            int by = y + 14 + hm_h + 10, bw = pw - 30;
            for (int i = 0; i < d_in; i++) {
                double v = bars[i] < 0 ? 0 : bars[i] > 1 ? 1 : bars[i];
                int x0 = x + i * bw / d_in, x1 = x + (i + 1) * bw / d_in;
                int bh = (int)lround(v * (bar_h - 12));
                spd_image_rect(&im, x0, by + bar_h - 12 - bh, x1 - x0 > 2 ? x1 - x0 - 1 : 1, bh, BAR);
            }
            spd_image_frame(&im, x - 1, by - 1, bw + 2, bar_h - 12 + 2, INK);
            spd_image_text(&im, x, by + bar_h - 8, "CI per feature", 1, INK);
        }
    }
    free(Wc), free(bars), free(norm), free(order);
    int rc = spd_image_write_png(&im, path);
    spd_image_free(&im);
    return rc;
}
