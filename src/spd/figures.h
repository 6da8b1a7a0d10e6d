// Evaluation figures as PNG files (libpng): a tiny raster renderer (bars, heat
// maps, a 5x7 bitmap font) into an RGB buffer. SPD's figure keys
// (spd/metrics/*.py) and metrics.jsonl's file naming (local_log):
//   <out_dir>/figures/<key with '/' -> '_'>_<step>.png, e.g.
//   figures/figures_causal_importance_values_100.png.
// All functions return 0, or -1 with spd_set_error.
#ifndef SPD_FIGURES_H
#define SPD_FIGURES_H

#include <stddef.h>
#include <stdint.h>

// ------------------------------------------------------------ raster

typedef struct {
    int w, h;
    uint8_t *rgb;  // [h][w][3]
} spd_image;

void spd_image_init(spd_image *im, int w, int h);  // white
void spd_image_free(spd_image *im);
void spd_image_rect(spd_image *im, int x, int y, int w, int h, uint32_t rgb);  // filled, clipped
void spd_image_frame(spd_image *im, int x, int y, int w, int h, uint32_t rgb); // 1-pixel outline
// 5x7 font at scale s (glyph cell 6s x 8s); lowercase drawn as uppercase; unknown chars as '?'.
void spd_image_text(spd_image *im, int x, int y, const char *s, int scale, uint32_t rgb);
int spd_text_width(const char *s, int scale);
// Diverging blue-white-red for v in [-1, 1].
uint32_t spd_colormap_diverging(double v);
int spd_image_write_png(const spd_image *im, const char *path);

// "<dir>/figures/<key: '/' -> '_'>_<step>.png" (creates <dir>/figures).
int spd_figure_path(char *buf, size_t size, const char *out_dir, const char *key, int64_t step);

// ------------------------------------------------------------ figures

// One histogram panel per module (grid of at most 6 rows, filled column by
// column, like SPD's plot_ci_values_histograms): `bins` bins over [min, max]
// of the module's values (numpy's hist), log y axis when log_y.
// Titles "<title_prefix> <module with '.' -> '_'>".
// CIHistograms: figures/causal_importance_values (ci_lower) and
// figures/causal_importance_values_pre_sigmoid; ComponentActivationDensity
// (figures/component_activation_density): the per-component densities.
int spd_fig_histograms(const char *path, int n_mods, const char *const *names, const double *const *values,
                       const int64_t *counts, int bins, int log_y, const char *title_prefix, const char *xlabel);
// CIMeanPerComponent (figures/ci_mean_per_component[_log]): per module the
// mean CI of each component, sorted descending, as bars (log y when log_y).
int spd_fig_ci_mean(const char *path, int n_mods, const char *const *names, const double *const *means,
                    const int *C, int log_y);
// TMS figure (the paper's Fig. 2 style): the target W [d_out, d_in] (nn.Linear
// layout) as a heat map, then per subcomponent (the n_show largest by norm of
// its rank-one weight W_c[o, i] = V[i, c] U[c, o]) its weight as a heat map on
// the same colour scale and, when ci_onehot [d_in, C] is given (CI of one-hot
// inputs, IdentityCIError's matrix), its CI per input feature as bars.
// V [d_in, C], U [C, d_out], float64.
int spd_fig_tms(const char *path, const char *module, const double *W, const double *V, const double *U,
                const double *ci_onehot, int d_out, int d_in, int C, int n_show);

// ------------------------------------------------------------ matrices (figures_matrix.c)

typedef enum { SPD_CMAP_BLUES, SPD_CMAP_REDS, SPD_CMAP_COOLWARM } spd_cmap;

// Heat maps, `per_row` panels per grid row (row-major mats[p] [rows[p], cols[p]],
// first row at the top, like matshow), titled titles[p]. Blues / Reds map [0, 1]
// (clamped); coolwarm maps [vmin, vmax] over all panels to blue-white-red.
// PermutedCIPlots: figures/causal_importances (Blues) and
// figures/causal_importances_upper_leaky (Reds), one panel per module; UVPlots:
// figures/uv_matrices, V and U of each module side by side.
int spd_fig_matrices(const char *path, int n_panels, const char *const *titles, const double *const *mats,
                     const int *rows, const int *cols, int per_row, spd_cmap cmap);

#endif
