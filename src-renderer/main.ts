import { mount } from 'svelte';
import App from './App.svelte';
import { httpClient } from './lib/api/http-client.ts';
import { defaultClient } from './lib/api/ipc-client.ts';
import { AppState } from './lib/state/app.svelte.ts';
import './app.css';

const api = defaultClient(() => httpClient());
const app = new AppState(api);
mount(App, { target: document.getElementById('app')!, props: { app } });
void app.start();
