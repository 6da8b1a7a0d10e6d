# Turns a harness log (results_run*.txt) into the summary table of NOTES.md:
# median ms per version, lib speed-up over v0, lib's fraction of the byte floor.
import sys
rows, order = {}, []
for l in open(sys.argv[1]):
    if not (l.startswith('| v') or l.startswith('| lib')) or 'median' in l: continue
    f = [x.strip() for x in l.strip().strip('|').split('|')]
    key = (f[1], f[2], f[3], f[5], f[6])
    if key not in rows: rows[key] = {}; order.append(key)
    rows[key][f[0]] = (float(f[7]), f[11])
vs = ['v0', 'v1', 'v2', 'v3', 'v4', 'v5', 'lib']
print('| layout | N | K1 | K2 | M,P | ' + ' | '.join(vs) + ' | v0 / lib | lib: of byte floor |')
print('|' + '---|' * (len(vs) + 7))
for k in order:
    r = rows[k]
    cells = [('%.3f' % r[v][0]) if v in r else '-' for v in vs]
    sp = ('%.2fx' % (r['v0'][0] / r['lib'][0])) if 'v0' in r else '-'
    print('| %s | %s | %s | %s | %s | ' % k + ' | '.join(cells) + ' | %s | %s |' % (sp, r['lib'][1]))
