// The few HTTP look-ups the page needs besides the feed. Names are a nicety: when a
// look-up fails the page still works and shows codes instead.

async function getJson(path, headers = {}) {
  const response = await fetch(path, { headers: { Accept: 'application/json', ...headers } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

/** The city's district outlines (GeoJSON FeatureCollection, public). */
export const fetchDistricts = () => getJson('/api/v1/ops/districts');

/** Department code → Chinese name. */
export async function fetchDepartmentNames(key) {
  const departments = await getJson('/api/v1/departments', { 'X-API-Key': key });
  return new Map(departments.map((d) => [d.code, d.name]));
}

/** Category code → Chinese name, from the public Open311 service list. */
export async function fetchCategoryNames() {
  const services = await getJson('/open311/v2/services.json');
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
