// Chinese labels and colours for the backend's codes, in one place so the map, the panels
// and the legend always agree. Unknown codes fall back to the code itself.

export const PRIORITIES = ['urgent', 'high', 'normal', 'low']; // most urgent first
export const SEVERITIES = ['critical', 'major', 'minor', 'warning']; // most severe first

export const PRIORITY_LABEL = { urgent: '紧急', high: '高', normal: '一般', low: '低' };
export const SEVERITY_LABEL = { critical: '严重', major: '重要', minor: '次要', warning: '预警' };
export const SLA_LABEL = { on_time: '正常', warning: '即将超时', breached: '已超时' };
export const STATUS_LABEL = {
  dispatched: '已派单', accepted: '已受理', in_progress: '处置中', returned: '退回补充',
  resolved: '已办结', closed: '已关闭', merged: '已合并',
};
export const SOURCE_LABEL = {
  'hotline-12345': '12345热线', 'emergency-120': '120急救', 'urban-inspection': '城管巡查',
  'grid-governance': '网格治理', open311: '市民上报', iot: '物联感知',
};

// RGB; the same hue means the same urgency whether it is a priority or a severity.
const RED = [239, 68, 68];
const ORANGE = [249, 115, 22];
const YELLOW = [234, 179, 8];
const BLUE = [56, 189, 248];
const GREY = [148, 163, 184];

export const PRIORITY_COLOR = { urgent: RED, high: ORANGE, normal: YELLOW, low: BLUE };
export const SEVERITY_COLOR = { critical: RED, major: ORANGE, minor: YELLOW, warning: BLUE };

export const label = (table, code) => (code == null ? '—' : table[code] ?? code);
export const priorityColor = (p) => PRIORITY_COLOR[p] ?? GREY;
export const severityColor = (s) => SEVERITY_COLOR[s] ?? GREY;
export const css = ([r, g, b], a = 1) => `rgba(${r},${g},${b},${a})`;

// Rank for sorting: 0 is the most urgent; unknown codes sort last.
export const priorityRank = (p) => rank(PRIORITIES, p);
export const severityRank = (s) => rank(SEVERITIES, s);
function rank(order, code) {
  const i = order.indexOf(code);
  return i < 0 ? order.length : i;
}
