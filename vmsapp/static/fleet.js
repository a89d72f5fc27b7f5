// The fleet as the dashboard knows it: NVRs and cameras by id, and how each
// pushed message changes them. No DOM here: dashboard.js renders what this keeps.

const ONLINE = "online";

// Fields of an NVR that admins change (REST); presence fields change only
// through snapshots and nvr_status, which carry status_version.
const DESCRIPTIVE = ["name", "hostname", "ip_address", "location", "created_at", "updated_at"];

function time(iso) {
  const ms = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(ms) ? null : ms;
}

function nvrRecord(nvr) {
  return {
    id: nvr.id,
    name: nvr.name ?? "",
    hostname: nvr.hostname ?? "",
    ip_address: nvr.ip_address ?? null,
    location: nvr.location ?? null,
    status: nvr.status,
    status_version: nvr.status_version ?? 0,
    last_seen: time(nvr.last_seen),
    created_at: nvr.created_at ?? null,
    updated_at: nvr.updated_at ?? null,
  };
}

export class Fleet {
  constructor() {
    this.nvrs = new Map();      // id -> NVR record
    this.cameras = new Map();   // id -> {id, nvr_id, status, at}
    this.byNvr = new Map();     // nvr id -> Set of camera ids
    this.cameraInfo = new Map(); // camera id -> {name, channel}: snapshots carry neither
    // Ids deleted while we watched: a late message about one must not bring it back.
    this.deletedNvrs = new Set();
    this.deletedCameras = new Set();
  }

  /** Replace everything with a snapshot (the first, or a resync at any time). */
  reset(snapshot) {
    this.nvrs.clear();
    this.cameras.clear();
    this.byNvr.clear();
    for (const nvr of snapshot.nvrs || []) {
      this.nvrs.set(nvr.id, nvrRecord(nvr));
      this.byNvr.set(nvr.id, new Set());
      this.deletedNvrs.delete(nvr.id);
    }
    for (const camera of snapshot.cameras || []) {
      this._putCamera({ id: camera.id, nvr_id: camera.nvr_id, status: camera.status, at: null });
      this.deletedCameras.delete(camera.id);
    }
  }

  /**
   * Apply one pushed message. Returns the ids of the NVRs whose row changed
   * (an id no longer in ``nvrs`` means its row goes), or an empty list when
   * the message changed nothing or was older than what is shown.
   */
  apply(message) {
    const handler = HANDLERS[message.type];
    return handler ? handler.call(this, message) : [];
  }

  cameraIdsOf(nvrId) {
    return this.byNvr.get(nvrId) || new Set();
  }

  /** ``{online, total}`` cameras of one NVR. */
  cameraCounts(nvrId) {
    let online = 0;
    const ids = this.cameraIdsOf(nvrId);
    for (const id of ids) {
      if (this.cameras.get(id)?.status === ONLINE) online += 1;
    }
    return { online, total: ids.size };
  }

  /** Fleet-wide counts for the summary. */
  totals() {
    let nvrsOnline = 0;
    let camerasOnline = 0;
    for (const nvr of this.nvrs.values()) if (nvr.status === ONLINE) nvrsOnline += 1;
    for (const camera of this.cameras.values()) if (camera.status === ONLINE) camerasOnline += 1;
    return {
      nvrsOnline, nvrsOffline: this.nvrs.size - nvrsOnline,
      camerasOnline, camerasOffline: this.cameras.size - camerasOnline,
    };
  }

  _putCamera(camera) {
    const previous = this.cameras.get(camera.id);
    if (previous && previous.nvr_id !== camera.nvr_id) this.byNvr.get(previous.nvr_id)?.delete(camera.id);
    this.cameras.set(camera.id, camera);
    if (!this.byNvr.has(camera.nvr_id)) this.byNvr.set(camera.nvr_id, new Set());
    this.byNvr.get(camera.nvr_id).add(camera.id);
  }

  _removeCamera(id) {
    const camera = this.cameras.get(id);
    if (!camera) return null;
    this.cameras.delete(id);
    this.byNvr.get(camera.nvr_id)?.delete(id);
    return camera.nvr_id;
  }

  _setCameraInfo(camera) {
    this.cameraInfo.set(camera.id, { name: camera.name ?? "", channel: camera.channel ?? null });
  }
}

const HANDLERS = {
  nvr_status(m) {
    let nvr = this.nvrs.get(m.nvr_id);
    if (!nvr) {
      // Its nvr_created may still be on the way (another worker): keep what
      // this says, the creation fills in the rest. Never revive a deleted one.
      if (m.reason === "deleted" || this.deletedNvrs.has(m.nvr_id)) return [];
      nvr = nvrRecord({ id: m.nvr_id, name: m.name, hostname: m.hostname, status_version: -1 });
      this.nvrs.set(nvr.id, nvr);
      this.byNvr.set(nvr.id, this.byNvr.get(nvr.id) || new Set());
    } else if (!(m.status_version > nvr.status_version)) {
      return []; // what we show is as new or newer (a snapshot overtook it)
    }
    nvr.status = m.status;
    nvr.status_version = m.status_version;
    nvr.last_seen = time(m.last_seen) ?? nvr.last_seen;
    if (m.name != null) nvr.name = m.name;
    if (m.hostname != null) nvr.hostname = m.hostname;
    const at = time(m.at);
    for (const id of m.camera_ids || []) {
      const camera = this.cameras.get(id);
      if (camera) {
        camera.status = m.status;
        camera.at = at;
      }
    }
    return [nvr.id];
  },

  camera_status(m) {
    const nvr = this.nvrs.get(m.nvr_id);
    if (!nvr || this.deletedCameras.has(m.camera_id)) return [];
    // Agents report cameras only while their NVR is online: an "online"
    // report for an offline NVR was overtaken by the NVR going offline.
    if (m.status === ONLINE && nvr.status !== ONLINE) return [];
    const at = time(m.at);
    const camera = this.cameras.get(m.camera_id);
    if (camera && camera.at != null && at != null && at < camera.at) return [];
    this._putCamera({ id: m.camera_id, nvr_id: m.nvr_id, status: m.status, at });
    return [m.nvr_id];
  },

  nvr_created(m) {
    return upsertNvr.call(this, m.nvr, true);
  },

  nvr_updated(m) {
    return upsertNvr.call(this, m.nvr, false);
  },

  nvr_deleted(m) {
    this.deletedNvrs.add(m.nvr_id);
    if (!this.nvrs.has(m.nvr_id)) return [];
    for (const id of this.cameraIdsOf(m.nvr_id)) {
      this.cameras.delete(id);
      this.deletedCameras.add(id);
    }
    this.nvrs.delete(m.nvr_id);
    this.byNvr.delete(m.nvr_id);
    return [m.nvr_id];
  },

  camera_created(m) {
    return upsertCamera.call(this, m.camera, true);
  },

  camera_updated(m) {
    return upsertCamera.call(this, m.camera, false);
  },

  camera_deleted(m) {
    this.deletedCameras.add(m.camera_id);
    this.cameraInfo.delete(m.camera_id);
    const nvrId = this._removeCamera(m.camera_id);
    return nvrId == null ? [] : [nvrId];
  },
};

function upsertNvr(data, created) {
  if (!data || data.id == null) return [];
  if (created) this.deletedNvrs.delete(data.id); // a creation is news however it arrives
  else if (this.deletedNvrs.has(data.id)) return [];
  const nvr = this.nvrs.get(data.id);
  if (!nvr) {
    this.nvrs.set(data.id, nvrRecord(data));
    if (!this.byNvr.has(data.id)) this.byNvr.set(data.id, new Set());
    return [data.id];
  }
  const newer = time(data.updated_at);
  const shown = time(nvr.updated_at);
  if (newer == null || shown == null || newer >= shown) {
    for (const field of DESCRIPTIVE) if (field in data) nvr[field] = data[field];
  }
  // Presence is taken from nvr_status alone, which says which cameras moved
  // with it; here only a fresher last_seen of the same status counts.
  const seen = time(data.last_seen);
  if (data.status_version === nvr.status_version && seen != null && seen > (nvr.last_seen ?? 0)) {
    nvr.last_seen = seen;
  }
  return [nvr.id];
}

function upsertCamera(data, created) {
  if (!data || data.id == null || !this.nvrs.has(data.nvr_id)) return [];
  if (created) this.deletedCameras.delete(data.id);
  else if (this.deletedCameras.has(data.id)) return [];
  this._setCameraInfo(data);
  const camera = this.cameras.get(data.id);
  // A status in a created/updated message may be older than a camera_status
  // already applied: keep the one we have.
  const status = camera ? camera.status : data.status;
  const previousNvr = camera?.nvr_id;
  this._putCamera({ id: data.id, nvr_id: data.nvr_id, status, at: camera?.at ?? null });
  return previousNvr != null && previousNvr !== data.nvr_id ? [previousNvr, data.nvr_id] : [data.nvr_id];
}
