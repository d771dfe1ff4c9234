// The HTTP calls the pages make besides the dashboard's feed. For the dashboard names are a
// nicety: when a look-up fails the page still works and shows codes instead. The workbench
// acts on tickets, so there a failure must say why: requests throw an ApiError carrying the
// HTTP status and the backend's `detail`.

export class ApiError extends Error {
  constructor(path, status, detail) {
    super(`${path}: HTTP ${status}${detail ? ` ${detail}` : ''}`);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
  }
}

/** FastAPI's `detail`: a sentence (HTTPException), or a validation error list (422). */
export function detailText(detail) {
  if (detail == null) return '';
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      // loc starts with where the value was ('body', 'query'): the field name is enough.
      const where = Array.isArray(d?.loc) ? d.loc.slice(1).join('.') : '';
      return where ? `${where}: ${d?.msg ?? ''}` : String(d?.msg ?? JSON.stringify(d));
    }).join('；');
  }
  return JSON.stringify(detail);
}

async function detailOf(response) {
  const text = await response.text().catch(() => '');
  try {
    return detailText(JSON.parse(text).detail);
  } catch {
    return text.slice(0, 200); // not JSON: a proxy's page, say; its start is enough
  }
}

/** A JSON request, with the API key if given; a JSON body is sent for POSTs. */
export async function requestJson(path, { key, method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (key) headers['X-API-Key'] = key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new ApiError(path, response.status, await detailOf(response));
  return response.json();
}

/** The city's district outlines (GeoJSON FeatureCollection, public). */
export const fetchDistricts = () => requestJson('/api/v1/ops/districts');

/** Every department: [{code, name, is_triage, …}] (staff keys). */
export const fetchDepartments = (key) => requestJson('/api/v1/departments', { key });

/** Department code → Chinese name. */
/** Who the key is: {role, scope, name}; 401 for an unknown key. */
export function whoami(key) {
  return requestJson('/api/v1/whoami', { key });
}

export async function fetchDepartmentNames(key) {
  const departments = await fetchDepartments(key);
  return new Map(departments.map((d) => [d.code, d.name]));
}

/** Category code → Chinese name, from the public Open311 service list. */
export async function fetchCategoryNames() {
  const services = await requestJson('/open311/v2/services.json');
  return new Map(services.map((s) => [s.service_code, s.service_name]));
}

/** A look-up that may fail: logs why and gives an empty Map. */
export async function orEmpty(promise) {
  try {
    return await promise;
  } catch (error) {
    console.warn('look-up failed, showing codes:', error.message);
    return new Map();
  }
}

// ---- tickets (the workbench) --------------------------------------------------------------

/** One page of tickets, the backend's order (resolve due first). A department key gets its
 *  own tickets only; `department` is the operations centre's filter. */
export function listTickets(key, { statuses = [], page = 1, perPage = 200, department } = {}) {
  const query = new URLSearchParams();
  for (const status of statuses) query.append('status', status);
  if (department) query.set('department', department);
  query.set('page', String(page));
  query.set('per_page', String(perPage));
  return requestJson(`/api/v1/tickets?${query}`, { key });
}

/** One ticket with its history (TicketRead). */
export const readTicket = (key, ticketId) =>
  requestJson(`/api/v1/tickets/${encodeURIComponent(ticketId)}`, { key });

/** Takes an action (accept, resolve, …); answers ActionResult {status, version, ticket|null}. */
export const actOnTicket = (key, ticketId, action, body) =>
  requestJson(`/api/v1/tickets/${encodeURIComponent(ticketId)}/${action}`,
    { key, method: 'POST', body });
