// Where the operations-centre API key comes from: ?key= in the URL (what the demo prints),
// else localStorage, else a form. A key from the URL is saved and then removed from the
// address bar, so it does not linger in history or on a wall screen's photo.

const STORAGE = 'ops.apiKey';

export function keyFromPage() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get('key');
  if (fromUrl) {
    saveKey(fromUrl);
    url.searchParams.delete('key');
    history.replaceState(null, '', url);
    return fromUrl;
  }
  return safeStorage(() => localStorage.getItem(STORAGE));
}

export function saveKey(key) {
  safeStorage(() => localStorage.setItem(STORAGE, key));
}

export function forgetKey() {
  safeStorage(() => localStorage.removeItem(STORAGE));
}

/** Shows the key form (with why, if a key was refused); resolves with the key typed. */
export function askForKey(reason = '') {
  const dialog = document.getElementById('key-dialog');
  const form = document.getElementById('key-form');
  const input = document.getElementById('key-input');
  document.getElementById('key-reason').textContent = reason;
  input.value = '';
  return new Promise((resolve) => {
    // Handler properties, not listeners: asking again replaces them instead of piling up.
    form.onsubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      saveKey(key);
      dialog.close();
      resolve(key);
    };
    // Escape would close the dialog and leave the page without a key.
    dialog.oncancel = (event) => event.preventDefault();
    dialog.showModal();
    input.focus();
  });
}

function safeStorage(action) {
  // Private windows and locked-down kiosks may refuse storage; the key then lasts a page.
  try {
    return action();
  } catch {
    return null;
  }
}
