// The map: Leaflet (vendored, window.L) drawing vector layers on a plain background.
// With no tile URL configured nothing is fetched from the internet: the unit and province
// boundaries are the base map.

import { t } from './i18n.js';
import { fill, formatDateTime, h, label } from './util.js';

const L = window.L;

export const COLORS = {
  province: '#3f3f46',
  commune: '#71717a',
  ownUnit: '#1d4ed8',
  inclusion: '#15803d',
  exclusion: '#dc2626',
  protection: '#7f1d1d',
  position: '#1d4ed8',
  alert: '#e11d48',
  stale: '#6b7280',
  track: '#4338ca',
  decision: {
    compliant: '#15803d',
    violation: '#dc2626',
    uncertain: '#b45309',
  },
  decisionOther: '#6b7280',
};

const STALE_MS = 10 * 60 * 1000;

/** A zone's style. Fills stay faint (inclusion zones are outlined only) so that overlapping
 *  zones of many people stay readable; `emphasis` (the selected person's zones) draws them
 *  thicker and lightly filled, the others thin and unfilled. */
export function zoneStyle(props, emphasis = true) {
  const p = props || {};
  const curfew = p.purpose === 'curfew' || (Array.isArray(p.schedule) && p.schedule.length > 0);
  let color = p.kind === 'exclusion' ? COLORS.exclusion : COLORS.inclusion;
  let fillOpacity = 0;
  let weight = 2.5;
  if (p.purpose === 'protection') {
    color = COLORS.protection;
    fillOpacity = 0.18;
    weight = 3;
  } else if (p.kind === 'exclusion') {
    fillOpacity = 0.1;
  }
  if (!emphasis) return { color, weight: 1.5, opacity: 0.7, fill: false, dashArray: curfew ? '6 5' : null };
  return { color, weight, fillColor: color, fillOpacity, dashArray: curfew ? '8 6' : null };
}

function decisionColor(decision) {
  return COLORS.decision[decision] || COLORS.decisionOther;
}

function escapeText(s) {
  const d = document.createElement('div');
  d.textContent = s == null ? '' : String(s);
  return d.innerHTML;
}

/** A zone feature as a Leaflet layer: polygons via GeoJSON, circles (Point + radius_m). */
function zoneLayer(feature, emphasis = true) {
  const props = { ...(feature.properties || {}) };
  const style = zoneStyle(props, emphasis);
  const geom = feature.geometry;
  const radius = props.radius_m;
  let center = props.center;
  if (!geom && center) center = center.coordinates || center;
  if (geom && geom.type === 'Point' && radius) center = geom.coordinates;
  let layer;
  if (center && radius) {
    layer = L.circle([center[1], center[0]], { radius, ...style });
  } else if (geom) {
    layer = L.geoJSON(feature, { style: () => style });
  } else {
    return null;
  }
  const name = props.id || feature.id || '';
  const kind = label('zone', props.kind);
  const purpose = props.purpose ? ` (${label('purpose', props.purpose)})` : '';
  layer.bindTooltip(`${escapeText(name)}: ${escapeText(kind + purpose)}`, { sticky: true });
  return layer;
}

export class MapView {
  constructor(container, { tileUrl, tileAttribution, onSelectSupervisee } = {}) {
    this.onSelectSupervisee = onSelectSupervisee || (() => {});
    this.map = L.map(container, {
      center: [16.0, 106.0],
      zoom: 6,
      zoomSnap: 0.5,
      keyboard: true,
      attributionControl: true,
    });
    this.map.attributionControl.setPrefix(
      '<a href="vendor/leaflet/LICENSE" title="Leaflet (BSD-2-Clause)">Leaflet</a>',
    );
    if (tileUrl) {
      // the deployment's own XYZ tile server; the unit boundaries stay drawn above it, so the
      // map still reads when tiles fail to load
      this.tiles = L.tileLayer(tileUrl, { maxZoom: 19, attribution: tileAttribution || '' }).addTo(this.map);
      container.classList.add('tiled-map');
    } else {
      container.classList.add('offline-map');
    }
    this.boundaries = L.featureGroup().addTo(this.map);
    this.zones = L.featureGroup().addTo(this.map);
    this.track = L.featureGroup().addTo(this.map);
    this.positions = L.featureGroup().addTo(this.map); // above the track: "where now" on top
    this.focus = L.featureGroup().addTo(this.map);
    this.zonesBySupervisee = new Map();
    this.selected = null;
    L.control.scale({ imperial: false }).addTo(this.map);
    this.offline = !tileUrl;
    this.legend = L.control({ position: 'bottomright' });
    this.legend.onAdd = () => {
      this.legendEl = L.DomUtil.create('div', 'map-legend');
      L.DomEvent.disableClickPropagation(this.legendEl);
      this.renderLegend();
      return this.legendEl;
    };
    this.legend.addTo(this.map);
  }

  renderLegend() {
    if (!this.legendEl) return;
    const swatch = (style, kind = 'line') => {
      const ns = 'http://www.w3.org/2000/svg';
      const svg = document.createElementNS(ns, 'svg');
      svg.setAttribute('width', '26');
      svg.setAttribute('height', '14');
      svg.setAttribute('aria-hidden', 'true');
      const shape = document.createElementNS(ns, kind === 'dot' ? 'circle' : 'rect');
      if (kind === 'dot') {
        shape.setAttribute('cx', '13');
        shape.setAttribute('cy', '7');
        shape.setAttribute('r', '5');
      } else {
        shape.setAttribute('x', '2');
        shape.setAttribute('y', '2');
        shape.setAttribute('width', '22');
        shape.setAttribute('height', '10');
      }
      shape.setAttribute('stroke', style.color);
      shape.setAttribute('stroke-width', String(style.weight || 2));
      shape.setAttribute('fill', style.fill || 'none');
      if (style.fillOpacity) shape.setAttribute('fill-opacity', String(style.fillOpacity));
      if (style.dashArray) shape.setAttribute('stroke-dasharray', '4 3');
      svg.append(shape);
      return svg;
    };
    const rows = [
      ['legend.province', swatch({ color: COLORS.province, weight: 3 })],
      ['legend.unit', swatch({ color: COLORS.ownUnit, weight: 2.5 })],
      ['legend.inclusion', swatch(zoneStyle({ kind: 'inclusion' }))],
      ['legend.exclusion', swatch(zoneStyle({ kind: 'exclusion' }))],
      ['legend.protection', swatch({ ...zoneStyle({ kind: 'exclusion', purpose: 'protection' }), fill: COLORS.protection })],
      ['legend.curfew', swatch(zoneStyle({ kind: 'inclusion', purpose: 'curfew' }))],
      ['legend.position', swatch({ color: '#fff', weight: 2, fill: COLORS.position, fillOpacity: 1 }, 'dot')],
      ['legend.alert', swatch({ color: COLORS.alert, weight: 3, fill: COLORS.alert, fillOpacity: 1 }, 'dot')],
      ['legend.stale', swatch({ color: '#fff', weight: 2, fill: COLORS.stale, fillOpacity: 1 }, 'dot')],
      ['legend.track', swatch({ color: COLORS.track, weight: 3 })],
    ];
    if (this.track && this.track.getLayers().length) {
      for (const dec of ['compliant', 'uncertain', 'violation', 'ignored']) {
        const c = COLORS.decision[dec] || COLORS.decisionOther;
        rows.push([`decision.${dec}`, swatch({ color: c, weight: 1, fill: c, fillOpacity: 1 }, 'dot')]);
      }
    }
    // A <details>: the officer folds it away (keyboard too) when it hides part of the map.
    const open = this.legendEl.firstChild ? this.legendEl.firstChild.open : true;
    fill(this.legendEl,
      h('details', { open },
        h('summary', { class: 'legend-title' }, t('map.legend')),
        ...rows.map(([key, sw]) => h('div', { class: 'legend-row' }, sw, h('span', {}, t(key)))),
        this.offline ? h('div', { class: 'legend-note' }, t('map.offline')) : null));
  }

  /** Unit boundaries: provinces thick, communes thin, the officer's own unit in blue. */
  setUnits(units, ownCode) {
    this.boundaries.clearLayers();
    for (const u of units) {
      if (!u.boundary) continue;
      const isProvince = !u.parent;
      const own = u.code === ownCode;
      const style = {
        color: own ? COLORS.ownUnit : isProvince ? COLORS.province : COLORS.commune,
        weight: isProvince ? 3 : own ? 2.5 : 1.2,
        fill: own,
        fillColor: COLORS.ownUnit,
        fillOpacity: own ? 0.03 : 0,
        interactive: !isProvince,
      };
      const layer = L.geoJSON({ type: 'Feature', geometry: u.boundary, properties: {} }, { style: () => style });
      if (!isProvince) layer.bindTooltip(`${escapeText(u.name)} (${escapeText(u.code)})`, { sticky: true });
      layer.unitCode = u.code;
      layer.isProvince = isProvince;
      this.boundaries.addLayer(layer);
      if (isProvince) layer.bringToBack();
    }
  }

  /** The zones of one supervisee (a GeoJSON FeatureCollection). */
  setZones(superviseeId, fc, { selected = false } = {}) {
    const old = this.zonesBySupervisee.get(superviseeId);
    if (old) this.zones.removeLayer(old);
    const group = L.featureGroup();
    for (const f of (fc && fc.features) || []) {
      const layer = zoneLayer(f, selected);
      if (layer) group.addLayer(layer);
    }
    this.zonesBySupervisee.set(superviseeId, group);
    this.zones.addLayer(group);
    this.positions.bringToFront(); // one SVG for all layers: the latest drawn is on top
    return group;
  }

  /** Last positions: a dot per supervisee and a ring of its accuracy. */
  setPositions(fc, now = Date.now(), alerting = new Set()) {
    this.positions.clearLayers();
    for (const f of (fc && fc.features) || []) {
      if (!f.geometry || f.geometry.type !== 'Point') continue;
      const [lon, lat] = f.geometry.coordinates;
      const p = f.properties || {};
      const stale = p.ts && now - p.ts > STALE_MS;
      const inAlert = alerting.has(p.supervisee_id);
      const color = inAlert ? COLORS.alert : stale ? COLORS.stale : COLORS.position;
      if (p.acc) {
        this.positions.addLayer(
          L.circle([lat, lon], { radius: p.acc, color, weight: 1, fillOpacity: 0.08, interactive: false }),
        );
      }
      if (inAlert) { // a halo around the person in alert: seen at a glance among the others
        this.positions.addLayer(L.circleMarker([lat, lon], { radius: 16, color: COLORS.alert, weight: 3, fill: false, className: 'alert-halo', interactive: false }));
      }
      const marker = L.circleMarker([lat, lon], {
        radius: inAlert ? 9 : 7,
        color: '#ffffff',
        weight: 2,
        className: inAlert ? 'position-alert' : '',
        fillColor: color,
        fillOpacity: 1,
      });
      const lines = [
        `<strong>${escapeText(p.supervisee_id || p.device_id)}</strong>${p.name ? ` ${escapeText(p.name)}` : ''}`,
        `${escapeText(t('detail.device'))}: ${escapeText(p.device_id)}`,
        escapeText(formatDateTime(p.ts)),
        p.acc != null ? `± ${Math.round(p.acc)} m` : '',
        p.battery != null ? `${escapeText(t('sup.battery'))}: ${Math.round(p.battery)} %` : '',
      ].filter(Boolean);
      marker.bindTooltip(lines.join('<br>'));
      marker.superviseeId = p.supervisee_id;
      if (p.supervisee_id) marker.on('click', () => this.onSelectSupervisee(p.supervisee_id));
      this.positions.addLayer(marker);
    }
  }

  /** A supervisee's track: the path, and each fix coloured by its decision. */
  setTrack(fc) {
    this.track.clearLayers();
    this.renderLegend();
    const pts = ((fc && fc.features) || [])
      .filter((f) => f.geometry && f.geometry.type === 'Point')
      .sort((a, b) => (a.properties?.ts ?? 0) - (b.properties?.ts ?? 0));
    if (!pts.length) return null;
    const latlngs = pts.map((f) => [f.geometry.coordinates[1], f.geometry.coordinates[0]]);
    this.track.addLayer(L.polyline(latlngs, { color: COLORS.track, weight: 3, opacity: 0.75 }));
    pts.forEach((f, i) => {
      const p = f.properties || {};
      const m = L.circleMarker(latlngs[i], {
        radius: 4,
        color: decisionColor(p.decision),
        weight: 1.5,
        fillColor: decisionColor(p.decision),
        fillOpacity: 0.9,
      });
      m.bindTooltip(
        [
          escapeText(formatDateTime(p.ts)),
          `seq ${escapeText(p.seq)} · ± ${Math.round(p.acc ?? 0)} m`,
          escapeText(label('decision', p.decision ?? 'none')),
        ].join('<br>'),
      );
      this.track.addLayer(m);
    });
    this.positions.bringToFront();
    this.renderLegend();
    return this.track.getBounds();
  }

  clearTrack() {
    this.track.clearLayers();
    this.renderLegend();
  }

  /** Mark a point (e.g. an alert's last fix) and centre on it. */
  focusOn(lat, lon, text) {
    this.focus.clearLayers();
    if (lat == null || lon == null) return;
    const m = L.circleMarker([lat, lon], { radius: 12, color: COLORS.exclusion, weight: 3, fill: false });
    if (text) m.bindTooltip(escapeText(text), { permanent: true, direction: 'top', offset: [0, -10] });
    this.focus.addLayer(m);
    this.map.setView([lat, lon], Math.max(this.map.getZoom(), 14));
  }

  /** Frame the given layers (or everything drawn). */
  fit(bounds) {
    let b = bounds;
    if (!b || !b.isValid()) {
      b = L.latLngBounds([]);
      for (const g of [this.boundaries, this.zones, this.positions, this.track]) {
        const gb = g.getBounds();
        if (gb.isValid()) b.extend(gb);
      }
    }
    if (b.isValid()) this.map.fitBounds(b, { padding: [24, 24], maxZoom: 16 });
  }

  /** Frame the officer's own unit (if its boundary is known) and the last positions. */
  fitUnit(code) {
    let target = null;
    this.boundaries.eachLayer((l) => {
      if (l.unitCode === code) target = l;
    });
    if (!target) {
      this.fit();
      return;
    }
    const b = L.latLngBounds(target.getBounds().getSouthWest(), target.getBounds().getNorthEast());
    const pb = this.positions.getBounds();
    if (pb.isValid()) b.extend(pb);
    this.fit(b);
  }

  refreshSize() {
    this.map.invalidateSize();
  }
}
