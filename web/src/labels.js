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
// History rows and the workbench's buttons: the ticket actions (dispatch/tickets/lifecycle.py)
// and what the system itself writes into a ticket's history.
export const ACTION_LABEL = {
  dispatch: '派单', accept: '接单', start: '开始处置', reject: '退回', transfer: '转派',
  'request-info': '补充信息请求', 'provide-info': '信息已补充', comment: '备注', resolve: '办结',
  close: '关闭', reopen: '重新打开', merge: '合并', event_updated: '上报更新',
  report_attached: '新增上报', priority_changed: '优先级调整', sla_warning: 'SLA 预警',
  sla_breach: 'SLA 超时', escalate: '升级督办',
};
export const SOURCE_LABEL = {
  'hotline-12345': '12345热线', 'emergency-120': '120急救', 'urban-inspection': '城管巡查',
  'grid-governance': '网格治理', open311: '市民上报', iot: '物联感知',
};

// RGB; the same hue means the same urgency whether it is a priority or a severity.
const RED = [239, 68, 68];
const GREEN = [34, 197, 94];
const ORANGE = [249, 115, 22];
const YELLOW = [234, 179, 8];
const BLUE = [56, 189, 248];
const GREY = [148, 163, 184];

export const PRIORITY_COLOR = { urgent: RED, high: ORANGE, normal: YELLOW, low: BLUE };
export const SEVERITY_COLOR = { critical: RED, major: ORANGE, minor: YELLOW, warning: BLUE };
export const SLA_COLOR = { on_time: GREEN, warning: YELLOW, breached: RED };

export const label = (table, code) => (code == null ? '—' : table[code] ?? code);
export const priorityColor = (p) => PRIORITY_COLOR[p] ?? GREY;
export const severityColor = (s) => SEVERITY_COLOR[s] ?? GREY;
export const slaColor = (s) => SLA_COLOR[s] ?? GREY;
export const css = ([r, g, b], a = 1) => `rgba(${r},${g},${b},${a})`;

// Rank for sorting: 0 is the most urgent; unknown codes sort last.
export const priorityRank = (p) => rank(PRIORITIES, p);
export const severityRank = (s) => rank(SEVERITIES, s);
function rank(order, code) {
  const i = order.indexOf(code);
  return i < 0 ? order.length : i;
}
