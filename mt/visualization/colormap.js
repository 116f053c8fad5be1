// Viridis (perceptually uniform, readable in grey): control points, linearly interpolated.
const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#fde725"]
  .map(h => [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)));
function color(w) {
  const x = Math.min(1, Math.max(0, w)) * (VIRIDIS.length - 1), i = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + (VIRIDIS[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
