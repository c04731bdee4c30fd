// @ts-check
// Camera and microphone: ask for them, list them in pickers, and say clearly what went wrong.

import { el } from "./ui.js";

export class DeviceError extends Error {
  /**
   * @param {"denied" | "missing" | "busy" | "unsupported" | "other"} kind
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.name = "DeviceError";
    this.kind = kind; // "denied" | "missing" | "busy" | "unsupported" | "other"
  }
}

/** @param {any} error a getUserMedia failure */
function explain(error) {
  const name = error?.name || "";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return new DeviceError(
      "denied",
      "Camera and microphone access was blocked. Allow it in your browser's site settings (the icon next to the address), then choose Try again.",
    );
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
    return new DeviceError("missing", "No camera or microphone was found. Connect one and choose Try again, or join without it.");
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
    return new DeviceError("busy", "Your camera or microphone is in use by another app. Close that app and choose Try again.");
  }
  return new DeviceError("other", "Your camera or microphone could not be started.");
}

/**
 * Open camera and microphone. Falls back to whichever of the two works; throws DeviceError when neither does.
 * @param {{audioDeviceId?: string, videoDeviceId?: string}} [devices]
 * @returns {Promise<MediaStream>}
 */
export async function openLocalMedia({ audioDeviceId, videoDeviceId } = {}) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new DeviceError("unsupported", "This browser cannot use a camera here. Open the link in an up-to-date browser over https.");
  }
  const audio = audioDeviceId ? { deviceId: { exact: audioDeviceId } } : true;
  const video = videoDeviceId
    ? { deviceId: { exact: videoDeviceId }, width: { ideal: 640 }, height: { ideal: 360 } }
    : { width: { ideal: 640 }, height: { ideal: 360 } };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch (error) {
    const both = /** @type {any} */ (error);
    if (both?.name === "NotAllowedError" || both?.name === "SecurityError") throw explain(both);
    for (const constraints of [{ audio }, { video }]) {
      try {
        return await navigator.mediaDevices.getUserMedia(constraints);
      } catch {
        // try the other one
      }
    }
    throw explain(both);
  }
}

/** @param {MediaStream | null | undefined} stream */
export function stopStream(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

// Fill the two <select>s with the devices the browser lists (labels appear once permission is granted).
/**
 * @param {HTMLSelectElement} audioSelect
 * @param {HTMLSelectElement} videoSelect
 * @param {MediaStream | null} stream the devices in use are preselected
 */
export async function fillDevicePickers(audioSelect, videoSelect, stream) {
  /** @type {MediaDeviceInfo[]} */
  let devices = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    devices = [];
  }
  /** @type {Record<string, string | undefined>} */
  const current = {
    audioinput: stream?.getAudioTracks()[0]?.getSettings().deviceId,
    videoinput: stream?.getVideoTracks()[0]?.getSettings().deviceId,
  };
  for (const [select, kind, noun] of /** @type {[HTMLSelectElement, string, string][]} */ ([
    [audioSelect, "audioinput", "Microphone"],
    [videoSelect, "videoinput", "Camera"],
  ])) {
    const options = devices.filter((d) => d.kind === kind);
    select.replaceChildren(
      ...options.map((device, index) =>
        el("option", { value: device.deviceId, selected: device.deviceId === current[kind] }, device.label || `${noun} ${index + 1}`),
      ),
    );
    if (options.length === 0) select.append(el("option", { value: "" }, `No ${noun.toLowerCase()} found`));
    select.disabled = options.length === 0;
  }
}
