// Shared by the pages: the API's enums and time ranges.

export const TRIGGER_TYPES = ['click', 'conversion', 'conversion_approved', 'conversion_rejected', 'postback', 'fraud', 'offer_joined', 'api_key_event'];
export const STATUSES = ['active', 'paused', 'disabled'];
export const EXECUTION_STATUSES = ['completed', 'failed', 'partial', 'retrying', 'cancelled'];

// STATS_RANGES: windows for pipeline stats (from = now - hours).
export const STATS_RANGES = [['1h', 'Last hour', 1], ['24h', 'Last 24 hours', 24], ['7d', 'Last 7 days', 168], ['30d', 'Last 30 days', 720]];

// statsWindow turns a STATS_RANGES key into {from, to} (RFC 3339), to whole minutes.
export function statsWindow(key, fallback = '24h') {
  const r = STATS_RANGES.find(([k]) => k === key) || STATS_RANGES.find(([k]) => k === fallback);
  const to = new Date();
  to.setUTCSeconds(0, 0);
  to.setUTCMinutes(to.getUTCMinutes() + 1);
  return { key: r[0], label: r[1], from: new Date(to.getTime() - r[2] * 3600e3).toISOString(), to: to.toISOString(), hours: r[2] };
}

// SAMPLE_DATA: an example event's data per trigger type, for tests.
export const SAMPLE_DATA = {
  click: { click: { id: 'test_click_123', offer_id: 'offer_1', country: 'US' } },
  conversion: { conversion: { id: 'test_conv_123', amount: 49.99, currency: 'USD' } },
  conversion_approved: { conversion: { id: 'test_conv_123', amount: 49.99, currency: 'USD', status: 'approved' } },
  conversion_rejected: { conversion: { id: 'test_conv_123', amount: 49.99, currency: 'USD', status: 'rejected' } },
  postback: { postback: { id: 'test_pb_123' } },
  fraud: { fraud: { id: 'test_fraud_123', score: 0.97 } },
  offer_joined: { offer: { id: 'offer_1' }, affiliate: { id: 'aff_1' } },
  api_key_event: { api_key: { id: 'key_1', action: 'created' } },
};
